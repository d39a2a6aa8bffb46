"""Reading samples, describing label spaces, splitting into labeled / reference folds / test."""
