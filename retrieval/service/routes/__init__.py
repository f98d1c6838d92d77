"""The service's routes, one module per concern; each module's ``router(config)`` is an ``APIRouter`` over
module-level handlers, with the parameter limits of that config (``reldistill.retrieval.service.params``)."""
