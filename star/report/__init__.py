"""`star report`: one HTML page (report/index.html + PNG plots) from what the registry and the runs stored.

    star.report.collect  runs under STAR_HOME, star.embedding_versions / embedding_compat (via star.store.report_data),
                         bench/results/serving.json  --> ReportData
    star.report.plots    ReportData --matplotlib (Agg)--> *.png (also the plots of `star text|graph train`)
    star.report.html     ReportData + plots --html.escape--> index.html

Nothing is imported here, so that `star.report.plots` stays light for the training jobs.
"""
