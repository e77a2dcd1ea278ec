"""Filler phrases of long synthetic texts: what real profiles and postings carry besides the evidence.

None of these name a skill, an occupation, a seniority or a city, so they add length and noise, not signal.
"""

from __future__ import annotations

TAGLINES = (
    "Turning complicated problems into simple routines", "Reliable, curious and always learning",
    "Helping teams deliver on time", "Quality first, people always", "Building things that last",
    "Calm under pressure", "Passionate about doing the job properly", "Learning something new every week",
)
SUMMARY = (
    "I care about doing things properly the first time, and about leaving a place better than I found it.",
    "Colleagues describe me as calm under pressure, well organised and easy to work with.",
    "I enjoy working with people from different backgrounds and learning from every one of them.",
    "Over the years I have learned that clear communication solves most problems before they start.",
    "I like to understand why a process exists before I try to improve it.",
    "Outside work I volunteer locally and mentor people who are starting out in the field.",
    "I am at my best in small teams where everyone owns their part of the result.",
    "Safety, accuracy and a good atmosphere in the team matter a lot to me.",
    "I have worked with customers, suppliers and managers at every level and adapt my style to each.",
    "I keep my knowledge current through courses, reading and conversations with peers.",
    "My approach is practical: measure first, change one thing at a time, and check the result.",
    "I take pride in reliable work, fair treatment of colleagues and meeting every deadline I commit to.",
    "Mentoring newer colleagues has become one of the most rewarding parts of my work.",
    "I have handled busy seasons, tight budgets and changing priorities without losing sight of quality.",
    "I am comfortable taking responsibility, and just as comfortable asking for help when it is needed.",
    "Continuous improvement is a habit for me rather than a project.",
)
ACHIEVEMENTS = (
    "Cut the average turnaround time by {n} % by reorganising the weekly planning.",
    "Trained and onboarded {k} new colleagues.", "Recognised as employee of the quarter in {y}.",
    "Reduced errors reported by customers by {n} % within a year.",
    "Took over the team's scheduling and kept overtime within budget.",
    "Introduced a checklist that is still used across the site.",
    "Handled a workload of around {k}0 cases a month with consistently positive feedback.",
    "Coordinated with {k} other departments on a shared improvement project.",
    "Covered for the team lead during a period of {k} months.",
    "Helped prepare the site for an external audit, passed without major findings.",
    "Kept records and documentation up to date for the whole team.",
    "Worked closely with suppliers to solve recurring delivery problems.",
)
EDUCATION = ("Bachelor's degree", "Master's degree", "Vocational diploma", "Apprenticeship certificate",
             "Higher national diploma", "Professional certificate", "Secondary school diploma", "Postgraduate diploma")
SCHOOLS = ("Northgate University", "Kingsbridge College", "the Open University", "Westfield Institute of Technology",
           "St. Mary's College", "Riverside Vocational School", "Eastbrook Polytechnic", "Central Technical College",
           "Hillcrest University", "the Academy of Applied Sciences")
LANGUAGES = ("English", "German", "French", "Spanish", "Italian", "Polish", "Dutch", "Portuguese", "Swedish",
             "Arabic", "Turkish", "Mandarin")
FLUENCY = ("native", "fluent", "professional working proficiency", "intermediate", "basic")
INTERESTS = ("running", "cooking", "photography", "football", "chess", "hiking", "reading history", "volunteering",
             "cycling", "gardening", "music", "travel", "board games", "swimming", "woodworking", "climbing")
CERTIFICATES = ("First aid certificate", "Health and safety at work (level 2)", "Driving licence (category B)",
                "Project management fundamentals", "Customer service excellence award", "Fire warden training",
                "Data protection essentials", "Leadership programme for new managers")
EARLY_EMPLOYERS = ("Freelance", "Self-employed", "Various agencies", "A family-owned business",
                   "A regional employer", "Temporary assignments", "Seasonal work")
CLOSINGS = ("Thanks for reading my profile.", "References available on request.",
            "Feel free to connect or send me a message.", "Happy to share my full CV on request.", "")

# -- job postings ---------------------------------------------------------------------------------
COMPANY_MORE = (
    "Founded in {y}, we now employ around {k}00 people.",
    "Our teams serve customers in more than {k}0 countries.",
    "We have grown every year since {y} and keep investing in our people.",
    "We are proud of our low staff turnover and our culture of learning.",
    "Sustainability and fair working conditions are part of how we operate.",
    "We work in small teams with short decision paths.",
    "Our customers range from small local businesses to large international organisations.",
    "We were named one of the region's best employers last year.",
)
ROLE_MORE = (
    "You will join a team of {k} colleagues and report to the team manager.",
    "The position is open because our team is growing.",
    "You will work closely with colleagues from operations, sales and finance.",
    "This is a replacement for a colleague who is moving to a new role within the company.",
    "You will be given a structured onboarding of {k} weeks with a dedicated buddy.",
    "The role combines independent work with regular team meetings.",
)
DUTIES_MORE = (
    "Keep accurate records and report progress to your manager.", "Contribute ideas to improve our ways of working.",
    "Follow our quality, health and safety standards.", "Support colleagues during busy periods.",
    "Communicate clearly with customers and other departments.", "Take part in team meetings and training.",
)
REQUIREMENTS_MORE = (
    "Good communication skills, written and spoken", "A structured and reliable way of working",
    "Willingness to learn and to share knowledge", "Ability to work independently and in a team",
    "Fluent English; other languages are a plus", "Attention to detail",
)
BENEFITS = (
    "Competitive salary and annual bonus", "{k}0 days of paid holiday", "Pension scheme with employer contribution",
    "Private health insurance", "Training budget and paid certifications", "Flexible working hours",
    "Public transport or bike allowance", "Modern equipment", "Employee discounts", "Free lunch and snacks",
    "Paid parental leave beyond the legal minimum", "Wellbeing programme and gym membership",
    "Regular team events", "Clear career paths and yearly development talks", "Company phone and laptop",
)
APPLY = (
    "Send us your CV and a short motivation letter through our careers page.",
    "Apply with your CV; a cover letter is optional. We reply to every application within two weeks.",
    "Our process: a short phone call, an interview with the team and a final conversation with the manager.",
    "Questions? Contact our recruitment team, we are happy to help.",
    "Please include your notice period and salary expectations in your application.",
)
EQUAL = (
    "We are an equal opportunity employer and welcome applications from everyone, regardless of age, gender, "
    "disability, religion, sexual orientation or background. If you need adjustments during the process, let us "
    "know.",
    "Diversity makes us better. We encourage applications from people of all backgrounds and will make reasonable "
    "adjustments for candidates who need them.",
)
FIRST_MONTHS = (
    "Get to know the team, our customers and the way we work.", "Shadow experienced colleagues on day-to-day work.",
    "Take over your first tasks independently, with a buddy to turn to.",
    "Agree your goals for the year with your manager.", "Complete our internal training programme.",
    "Suggest at least one improvement based on a fresh pair of eyes.",
)
VALUES = (
    "We say what we do and do what we say.", "We treat customers and colleagues the way we would like to be treated.",
    "We celebrate success together and learn from mistakes without blame.",
    "We give everyone the time and budget to keep learning.",
    "We keep things simple and make decisions close to the work.",
    "We care about the communities and the environment we work in.",
    "We believe good work needs good rest, so we respect evenings and holidays.",
)
