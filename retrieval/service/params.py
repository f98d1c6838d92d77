"""Request parameters whose limits come from the app's ``ServeConfig`` (longest query, largest k).

A route handler is a plain module-level function; :func:`with_params` gives one app its own endpoint for it,
whose named parameters carry that app's ``Query``/``Path`` declarations, so validation, 422 messages and the
OpenAPI schema state the configured limits exactly as a handler written with them would.
"""

import functools
import inspect
from typing import Annotated, Any


def with_params(handler, **declarations: Any):
    """``handler`` as an endpoint whose parameters named in ``declarations`` are ``Annotated[type, declaration]``."""
    sig = inspect.signature(handler, eval_str=True)
    unknown = set(declarations) - set(sig.parameters)
    if unknown:
        raise TypeError(f"{handler.__name__} has no parameter {', '.join(sorted(unknown))}")
    params = [p.replace(annotation=Annotated[p.annotation, declarations[p.name]]) if p.name in declarations else p
              for p in sig.parameters.values()]

    @functools.wraps(handler)
    async def endpoint(*args, **kwargs):
        return await handler(*args, **kwargs)

    endpoint.__signature__ = sig.replace(parameters=params)
    return endpoint
