"""`python -m reldistill.workflow.cli` (what `accelerate launch -m` runs): the `reldistill` command."""

from reldistill.workflow.cli import main

main()
