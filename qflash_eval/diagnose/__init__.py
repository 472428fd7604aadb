"""`eval.py diagnose`: where a mode loses accuracy, by attention layer and head (measure.py: the
statistics; write.py: JSON, Markdown and PNG; command.py: flags, data and the progress bar)."""
