"""Building blocks every package may use: atomic file writes and run-folder markers, checked choices, plugin lookup."""
