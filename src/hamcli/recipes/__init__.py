"""Named, runnable recipes: the HAM10000 projects hamcli reproduces, and the recommended CPU recipe."""
