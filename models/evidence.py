"""The names of a candidate pair's own evidence that stage 3 can weigh beside the objectives;
kept apart from models/fusion.py so that reading the configuration imports no numerical library."""

# The pair's evidence the transition weighting may weigh beside the objectives (always adding).
EVIDENCE = ("content", "cooccurrence", "coclicks", "popularity")
