"""The six loss classes declared once; ``xmargin.modules``, ``xmargin.nn`` and ``xmargin.keras``
build theirs from these declarations.

A :class:`LossSpec` names a class and its functional and says what the functional cannot: whether
its target holds class indices and whether its values are element-wise. The rest is read from
the functional's public signature: the arrays of a call (the parameters without a default), the
constructor's options (the other parameters: names, defaults, order, keyword-only or not) and
which of those are arrays (``weight``, a buffer in ``xmargin.nn``). :meth:`LossSpec.checked`
validates a constructor's arguments alike in the three layers, and :class:`FromSpec` gives a
class declared for a spec its ``__init__`` (and ``forward``) with that signature, written out as
a hand-written one would be (``inspect.signature``, ``help`` and the ``TypeError`` of a wrong
call are those of a ``def``), as :mod:`dataclasses` writes ``__init__``.

Framework-free: ``import xmargin`` imports it.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from . import losses as _f
from ._xp import check_p, check_real, resolve_reduction
from .backends import check_backend_name

Parameter = inspect.Parameter

#: PyTorch's legacy arguments: folded into ``reduction`` when a loss is built, never kept
LEGACY = ("size_average", "reduce")
#: options that hold an array (a registered buffer in xmargin.nn; a Keras config keeps a list)
ARRAYS = ("weight", "neg_weight")

# an option's check when a loss is built: (class name, value) -> the value kept
_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "margin": lambda cls, value: check_real(cls, "margin", value),
    "p": check_p,
}


class LossSpec:
    """One loss class: its ``name``, its ``functional`` and what its signature says."""

    __slots__ = ("elementwise", "functional", "index_targets", "inputs", "name", "options",
                 "parameters")  # fmt: skip

    def __init__(
        self,
        name: str,
        functional: Callable[..., Any],
        *,
        index_targets: bool = False,
        elementwise: bool = False,
    ):
        self.name = name
        self.functional = functional
        #: the target holds class indices (xmargin.keras keeps its integer dtype)
        self.index_targets = index_targets
        #: one value per element (xmargin.keras averages those of a sample)
        self.elementwise = elementwise
        params = inspect.signature(functional).parameters.values()
        #: the arrays of a call, in order: ``("input", "target")``
        self.inputs = tuple(p.name for p in params if p.default is p.empty)
        #: the constructor's parameters: the functional's other ones, as they are there
        self.parameters = tuple(p for p in params if p.default is not p.empty)
        #: the options an object keeps, in signature order (``reduction`` included)
        self.options = tuple(p.name for p in self.parameters if p.name not in LEGACY)

    def __repr__(self) -> str:
        return f"LossSpec({self.name!r}, {self.functional.__name__})"

    def checked(self, cls: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """A constructor's ``arguments`` validated, as the options to keep (``size_average``
        and ``reduce`` folded into ``reduction`` with PyTorch's warning); errors name ``cls``."""
        options = {key: value for key, value in arguments.items() if key not in LEGACY}
        if "reduction" in options:
            options["reduction"] = resolve_reduction(
                cls, arguments.get("size_average"), arguments.get("reduce"), options["reduction"]
            )
        if "backend" in options:
            check_backend_name(cls, options["backend"])
        return {key: _CHECKS[key](cls, v) if key in _CHECKS else v for key, v in options.items()}


SPECS = (
    LossSpec("SoftMarginLoss", _f.soft_margin_loss, elementwise=True),
    LossSpec("MultiLabelSoftMarginLoss", _f.multilabel_soft_margin_loss),
    LossSpec("MultiMarginLoss", _f.multi_margin_loss, index_targets=True),
    LossSpec("MultiLabelMarginLoss", _f.multilabel_margin_loss, index_targets=True),
    LossSpec("HingeEmbeddingLoss", _f.hinge_embedding_loss, elementwise=True),
    LossSpec("MarginRankingLoss", _f.margin_ranking_loss),
)
#: the specs by class name
SPEC = {spec.name: spec for spec in SPECS}
#: the class names, sorted: each layer's ``__all__``
NAMES = tuple(sorted(SPEC))


def method(cls: type, name: str, parameters: Sequence[Parameter], delegate: str) -> Any:
    """A method ``cls.name(self, <parameters>)`` returning
    ``self.<delegate>({parameter: value, ...})``."""
    bare = [p.replace(default=p.empty, annotation=p.empty) for p in parameters]
    # (Signature checks the parameters' order and kinds)
    header = inspect.Signature([Parameter("self", Parameter.POSITIONAL_OR_KEYWORD), *bare])
    arguments = ", ".join(f"{p.name!r}: {p.name}" for p in parameters)
    source = f"def {name}{header}:\n    return self.{delegate}({{{arguments}}})\n"
    namespace: dict[str, Any] = {"__name__": cls.__module__}
    exec(source, namespace)
    fn = namespace[name]
    with_default = [p for p in parameters if p.default is not p.empty]
    fn.__defaults__ = tuple(p.default for p in with_default if p.kind != p.KEYWORD_ONLY) or None
    fn.__kwdefaults__ = {
        p.name: p.default for p in with_default if p.kind == p.KEYWORD_ONLY
    } or None
    fn.__qualname__ = f"{cls.__qualname__}.{name}"
    if sys.version_info >= (3, 11):  # (the name a wrong call's TypeError gives)
        fn.__code__ = fn.__code__.replace(co_qualname=fn.__qualname__)
    return fn


class FromSpec:
    """Base of each layer's loss classes: a subclass declared with ``spec=`` becomes the
    class of that spec (its name must be the spec's). It gets ``_spec``, an
    ``__init__(self, <_init_parameters(spec)>)`` that calls ``self._setup(arguments)`` and,
    where the layer has a ``_forward``, a ``forward(self, <spec.inputs>)`` that returns
    ``self._forward(inputs)`` (``arguments`` and ``inputs`` are dicts by parameter name).
    Subclasses of those classes inherit them as they are."""

    __slots__ = ()
    _spec: ClassVar[LossSpec]

    def __init_subclass__(cls, spec: LossSpec | None = None, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if spec is None:
            return
        if cls.__name__ != spec.name:
            raise TypeError(f"{cls.__qualname__} is declared for {spec.name}")
        members: dict[str, Any] = {"_spec": spec}
        members["__init__"] = method(cls, "__init__", cls._init_parameters(spec), "_setup")
        if hasattr(cls, "_forward"):
            inputs = [Parameter(n, Parameter.POSITIONAL_OR_KEYWORD) for n in spec.inputs]
            members["forward"] = method(cls, "forward", inputs, "_forward")
        for key, value in members.items():
            setattr(cls, key, value)

    @classmethod
    def _init_parameters(cls, spec: LossSpec) -> Sequence[Parameter]:
        """The constructor's parameters: the functional's own by default."""
        return spec.parameters

    if TYPE_CHECKING:  # (each class's own, written from its spec)

        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    def _setup(self, arguments: dict[str, Any]) -> None:
        raise NotImplementedError
