"""Workflow: the layer above the stages — the `reldistill` CLI and the resumable run orchestration.

``reldistill.workflow.pipeline.Pipeline`` runs data check → teacher → candidates → scoring →
students → index → eval into one run directory; ``reldistill.workflow.cli:main`` is the console
entry point. Core (``reldistill``) never imports this package; this package imports the stages.
"""
