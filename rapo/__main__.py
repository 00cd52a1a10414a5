"""`python -m rapo` runs the `rapo` command line."""

from rapo.agent.cli.main import main

main()
