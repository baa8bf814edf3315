"""`python -m walle.cli` runs the `walle` command line."""

from walle.cli import main

main()
