"""The public loss functions, made from their implementations: each loss is defined once.

A loss is written as its implementation, ``_name(<the public parameters>, *, argnums=(),
fast=True) -> (loss, gradients)``, whose docstring is the public one. :func:`public_loss` makes
the public ``name`` from it and registers the pair in :data:`LOSSES` (what
:func:`xmargin.value_and_grad` reads):

* the same parameters, defaults, keyword-only markers and annotations, less ``argnums`` and
  ``fast``: the function is generated with that very parameter list, so Python binds the
  arguments (no per-call cost) and a bad call raises Python's own ``TypeError`` naming
  ``name``;
* the docstring (its doctests run there; the implementation keeps a one-line pointer),
  ``__name__``, ``__qualname__`` and ``__module__``; ``__wrapped__`` is the implementation
  (its source, its line numbers);
* it returns the loss alone: ``impl(..., argnums=())[0]``.

Statically, the public function has the implementation's parameters (a ``ParamSpec`` cannot
drop the two private keywords; at run time they are refused).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, cast

Array = Any
P = ParamSpec("P")

# keywords of an implementation that its public function does not take
PRIVATE = ("argnums", "fast")

# public function -> (implementation returning (loss, grads), positions of the score arguments)
LOSSES: dict[Callable[..., Any], tuple[Callable[..., Any], tuple[int, ...]]] = {}


def public_loss(
    impl: Callable[P, tuple[Array, tuple[Array, ...]]], scores: tuple[int, ...] | None = None
) -> Callable[P, Array]:
    """The public function of the loss implemented by ``impl`` (named ``_<name>``), registered
    in :data:`LOSSES` with its score arguments: ``scores``, by default the positional
    parameters before ``target`` (the fused loss's ``bias`` comes after it)."""
    name = impl.__name__.removeprefix("_")
    signature = inspect.signature(impl)
    params = [p for p in signature.parameters.values() if p.name not in PRIVATE]
    positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    keyword = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
    if len(positional) + len(keyword) != len(params) or "target" not in positional:
        raise TypeError(f"public_loss: unsupported signature of {impl.__name__}{signature}")
    head = ", ".join(positional + (["*", *keyword] if keyword else []))
    call = ", ".join(positional + [f"{k}={k}" for k in keyword])
    # one line, placed at the implementation's `def` line of its file: tracebacks point there
    code = impl.__code__
    source = "\n" * (code.co_firstlineno - 1) + f"def {name}({head}): return impl({call})[0]\n"
    namespace: dict[str, Any] = {"impl": impl}
    exec(compile(source, code.co_filename, "exec"), namespace)
    fn = namespace[name]
    fn.__defaults__ = impl.__defaults__  # (the private keywords are keyword-only)
    fn.__kwdefaults__ = {
        k: v for k, v in (impl.__kwdefaults__ or {}).items() if k not in PRIVATE
    } or None
    fn.__signature__ = signature.replace(parameters=params, return_annotation="Array")
    fn.__annotations__ = {
        k: v for k, v in impl.__annotations__.items() if k not in PRIVATE and k != "return"
    } | {"return": "Array"}
    fn.__module__ = impl.__module__
    fn.__qualname__ = impl.__qualname__.removeprefix("_")
    fn.__doc__ = impl.__doc__
    fn.__wrapped__ = impl
    impl.__doc__ = f"(loss, gradients) of :func:`{name}`, the gradients for ``argnums``."
    LOSSES[fn] = (impl, tuple(range(positional.index("target"))) if scores is None else scores)
    return cast(Callable[P, Array], fn)
