"""`python -m meterread`: the same as the `meterread` command."""

from meterread.cli import main

main()
