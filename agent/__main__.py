"""`python -m agent` runs the `rapo` command line."""

from agent.cli import main

main()
