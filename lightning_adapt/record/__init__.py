"""The run record: what a run measured (tokens, FLOPs, time, memory, ICL predictions) and the files it is kept in."""
