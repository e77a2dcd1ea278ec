"""Everything that talks SQL or Feast: the marketplace writer, the feature catalog, the Feast repo objects,
the fast point-in-time offline store, training sets and online reads."""
