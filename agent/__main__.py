"""`python -m agent` runs the `rapo` command line."""

from agent.cli.main import main

main()
