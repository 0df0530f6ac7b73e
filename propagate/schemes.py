"""Initialization schemes named by formula: one variance-scaling mechanism, presets as factories.

Every fan-based scheme is ``variance_scaling(scale, mode, distribution)`` as in Keras 3 and JAX:
per-entry variance ``v = scale / max(1, fan)`` with fan = fan_in, fan_out or
fan_avg = (fan_in + fan_out)/2, drawn from

* ``normal``       N(0, v), untruncated (JAX "normal", Keras "untruncated_normal");
* ``uniform``      U(-sqrt(3 v), sqrt(3 v));
* ``truncnormal``  N(0, v / 0.8796^2) cut at +-2 of its own std, realised variance exactly v
  (Keras/JAX "truncated_normal"; Keras's "normal" quietly means this one).

He, LeCun, Glorot/Xavier, the torch layer default and e-lab's "kaiming" are (scale, mode,
distribution) triples; framework spellings are aliases of the formula, and a label that means
different formulas in different frameworks ("xavier", "kaiming", ...) is refused with the
candidates. Fixed laws (AlexNet's N(0, 0.01^2), Keras ``TruncatedNormal``, torch
``trunc_normal_``), gain x Haar orthogonal and LSUV's orthogonal pre-init complete the registry.

A layer's law is split as ``W = std * W_hat``; :func:`sample_unit` draws ``W_hat`` in float64,
trial-major with a fixed number of variates per trial (the prefix property of ``rng``).

References: He, Zhang, Ren & Sun 2015 (arXiv:1502.01852); Glorot & Bengio 2010; LeCun, Bottou,
Orr & Mueller 1998 (Efficient BackProp); Saxe, McClelland & Ganguli 2014 (arXiv:1312.6120);
Mishkin & Matas 2016 (arXiv:1511.06422); ``propagate schemes`` for every framework name.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.special import ndtr, ndtri

from .activations import Activation
from .errors import InputError

__all__ = [
    "DISTRIBUTIONS",
    "MODES",
    "TRUNCNORMAL_STD_2",
    "Scheme",
    "LayerInit",
    "InitSpec",
    "SCHEMES",
    "lookup",
    "resolve_scheme",
    "sample_unit",
    "scheme_table",
    "truncated_normal_moments",
]

DISTRIBUTIONS = ("normal", "uniform", "truncnormal", "truncnormal-abs", "orthogonal")
MODES = ("fan_in", "fan_out", "fan_avg")
OVERRIDE_DISTRIBUTIONS = ("normal", "uniform", "truncnormal")
KINDS = ("variance_scaling", "fixed", "orthogonal", "lsuv")

# Std of N(0, 1) cut to [-2, 2], sqrt(1 - 4 phi(2) / (2 Phi(2) - 1)); the literal Keras and JAX
# divide by, so a +-2 std cut realises exactly the target variance.
TRUNCNORMAL_STD_2 = 0.87962566103423978
_SQRT3 = math.sqrt(3.0)
_TORCH_TRUNC_BOUNDS = (-2.0, 2.0)  # torch trunc_normal_ defaults a, b


def truncated_normal_moments(c: float) -> tuple[float, float]:
    """(E x^2, E x^4) of x ~ N(0, 1) conditioned on |x| <= c, for c > 0.

    Closed form E x^2 = 1 - 2c phi(c)/Z, E x^4 = 3 E x^2 - 2c^3 phi(c)/Z, Z = 2 Phi(c) - 1;
    for c <= 1 (where that form cancels) the series of int_0^c x^2k exp(-x^2/2) dx instead.
    """
    if c > 40.0:  # phi(c) underflows: the cut is invisible in float64
        return 1.0, 3.0
    if c <= 1.0:
        terms = [(-0.5 * c * c) ** n / math.factorial(n) for n in range(25)]

        def integral(k: int) -> float:  # int_0^c x^2k exp(-x^2/2) dx / c^(2k+1)
            return math.fsum(t / (2 * k + 2 * n + 1) for n, t in enumerate(terms))

        base = integral(0)
        return c**2 * integral(1) / base, c**4 * integral(2) / base
    tail = 2.0 * c * math.exp(-0.5 * c * c) / math.sqrt(2.0 * math.pi) / math.erf(c / math.sqrt(2))
    m2 = 1.0 - tail
    return m2, 3.0 * m2 - c * c * tail


_M2_TRUNC2, _M4_TRUNC2 = truncated_normal_moments(2.0)


# ------------------------------------------------------------------------------ registry types
@dataclass(frozen=True)
class Scheme:
    """A registry entry (preset): the formula, its accepted spellings and its listing text.

    Attributes:
        name: canonical CLI name, e.g. ``he-normal``.
        aliases: other accepted spellings (framework names), e.g. ``kaiming-normal``.
        kind: ``variance_scaling``, ``fixed``, ``orthogonal`` or ``lsuv``.
        scale: variance-scaling scale; None means gain^2 taken from the activation.
        mode: fan mode of a variance-scaling scheme, else None.
        distribution: the scheme's own law, one of DISTRIBUTIONS.
        summary .. traps: text for ``propagate schemes`` (law, per-entry variance v, bound or
            std, ReLU per-layer factor 1/2 fan_in v, framework names, pitfalls).
        default_std: std of a fixed law when ``std`` is not given.
    """

    name: str
    aliases: tuple[str, ...]
    kind: str
    scale: float | None
    mode: str | None
    distribution: str
    summary: str
    law: str
    variance: str
    bound_or_std: str
    relu_factor: str
    frameworks: str
    traps: str
    default_std: float | None = None


@dataclass(frozen=True)
class LayerInit:
    """One layer's resolved law: ``W = std * W_hat``, W of shape (fan_out, fan_in).

    Attributes:
        distribution: law of W_hat, one of DISTRIBUTIONS.
        std: multiplier sigma (normal/uniform: the entry std; truncnormal kinds: pre-cut std;
            orthogonal: the gain).
        weight_var: nominal Var(W_ij), the realised variance of the law.
        fan_in, fan_out: layer shape.
        fan: what the variance is divided by (fan of the mode, floored at 1; max(fan_in,
            fan_out) for orthogonal; 1.0 for fan-independent laws).
        lo, hi: truncation of W_hat in units of std (truncnormal kinds), else None.
        mu4: E w^4 / (E w^2)^2 of an entry: normal 3, uniform 9/5, truncated exact, orthogonal
            3n/(n+2) with n = max(fan_in, fan_out) the length of the unit vectors.
        gain: sqrt(scale) for variance scaling (torch's gain), the orthogonal multiplier, or None.
    """

    distribution: str
    std: float
    weight_var: float
    fan_in: int
    fan_out: int
    fan: float
    lo: float | None
    hi: float | None
    mu4: float
    gain: float | None

    @property
    def bound(self) -> float | None:
        """Largest possible |W_ij|, or None for the unbounded normal."""
        if self.distribution == "uniform":
            return self.std * _SQRT3
        if self.hi is not None:
            return self.std * self.hi
        if self.distribution == "orthogonal":
            return self.std  # entries of an orthonormal row/column
        return None


@dataclass(frozen=True)
class InitSpec:
    """A scheme with its overrides resolved once, independent of layer shapes.

    Attributes:
        scheme: the registry entry.
        distribution: law actually drawn (after a ``dist`` override).
        mode: fan mode (variance scaling without a fixed ``std``), else None.
        scale: v = scale / fan, or None for fan-independent and orthogonal laws.
        gain: sqrt(scale) for variance scaling; the multiplier for orthogonal; else None.
        std: fixed std (gauss: sigma; keras-truncated-normal, torch-trunc-normal: pre-cut std;
            a ``std`` override of a fan-based scheme: the realised std), else None.
        trunc_a, trunc_b: absolute cut of torch-trunc-normal, else None.
        gain_source: ``activation``, ``override``, ``scheme`` (the preset's own scale) or None.
        activation: the activation the gain was taken from.
    """

    scheme: Scheme
    distribution: str
    mode: str | None
    scale: float | None
    gain: float | None
    std: float | None
    trunc_a: float | None = None
    trunc_b: float | None = None
    gain_source: str | None = None
    activation: Activation | None = None

    @property
    def name(self) -> str:
        return self.scheme.name

    @property
    def fixed_weight_var(self) -> float | None:
        """Per-entry variance of a fan-independent law, else None."""
        if self.std is None:
            return None
        if self.scheme.kind == "variance_scaling":
            return self.std**2  # a std override is the realised std
        native = self.scheme.distribution
        if native == "truncnormal":
            return self.std**2 * _M2_TRUNC2
        if native == "truncnormal-abs":
            return self.std**2 * truncated_normal_moments(self.trunc_b / self.std)[0]
        return self.std**2

    def layer(self, fan_in: int, fan_out: int) -> LayerInit:
        """The law of a (fan_out, fan_in) weight matrix."""
        fan_in, fan_out = _check_fan("fan_in", fan_in), _check_fan("fan_out", fan_out)
        lo = hi = None
        if self.distribution == "orthogonal":
            fan = float(max(fan_in, fan_out))  # the length of the unit vectors
            std, var, mu4 = self.gain, self.gain**2 / fan, 3.0 * fan / (fan + 2)
        elif self.scale is not None:
            fan = max(1.0, float(_fan(self.mode, fan_in, fan_out)))  # Keras floors at 1
            var = self.scale / fan
        else:
            fan, var = 1.0, self.fixed_weight_var
        if self.distribution == "truncnormal-abs":
            std, hi = self.std, self.trunc_b / self.std
            lo = -hi
            m2, m4 = truncated_normal_moments(hi)
            mu4 = m4 / (m2 * m2)
        elif self.distribution == "truncnormal":
            std, lo, hi = math.sqrt(var) / TRUNCNORMAL_STD_2, -2.0, 2.0
            mu4 = _M4_TRUNC2 / (_M2_TRUNC2 * _M2_TRUNC2)
        elif self.distribution != "orthogonal":
            std, mu4 = math.sqrt(var), (3.0 if self.distribution == "normal" else 1.8)
        return LayerInit(self.distribution, std, var, fan_in, fan_out, fan, lo, hi, mu4, self.gain)

    @property
    def weight_var_rule(self) -> str:
        """The per-entry variance as a formula in fan_in, fan_out with the numbers filled in."""
        if self.distribution == "orthogonal":
            rule = _ratio(self.gain**2, "max(fan_in, fan_out)")
            return rule + (", then rescaled from data" if self.scheme.kind == "lsuv" else "")
        if self.scale is None:
            return f"{self.fixed_weight_var:.10g}"
        if self.mode == "fan_avg":
            return _ratio(2 * self.scale, "(fan_in+fan_out)")
        return _ratio(self.scale, self.mode)

    def to_dict(self) -> dict:
        """JSON-ready description of every resolved parameter."""
        act = self.activation
        return {
            "scheme": self.scheme.name,
            "kind": self.scheme.kind,
            "distribution": self.distribution,
            "mode": self.mode,
            "scale": self.scale,
            "gain": self.gain,
            "gain_source": self.gain_source,
            "std": self.std,
            "trunc_bounds": None if self.trunc_a is None else [self.trunc_a, self.trunc_b],
            "weight_var": self.weight_var_rule,
            "activation": None if act is None else act.name,
            "negative_slope": None if act is None else act.negative_slope,
        }


def _fan(mode: str, fan_in: int, fan_out: int) -> float:
    return {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": 0.5 * (fan_in + fan_out)}[mode]


def _check_fan(label: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InputError(f"{label} {value!r} is not allowed; give an integer >= 1")
    return int(value)


# ------------------------------------------------------------------------------ preset factories
def _coef(c: Fraction, g: bool) -> str:
    """c or c*g^2 as text: 1/6, 2, g²/2, 2g²."""
    if not g:
        return str(c)
    num = "" if c.numerator == 1 else str(c.numerator)
    return f"{num}g²" + ("" if c.denominator == 1 else f"/{c.denominator}")


def _over(c: Fraction, g: bool, den: str) -> str:
    """c/den as text, keeping a fractional c in the denominator: 1/(3 fan_in)."""
    if c.denominator != 1:
        return f"{_coef(Fraction(c.numerator), g)}/({c.denominator} {den})"
    return f"{_coef(c, g)}/{den}"


def _ratio(x: float, den: str) -> str:
    """x/den with x as a small fraction where it is one (1/(3 fan_in)), else 10 digits."""
    c = Fraction(x).limit_denominator(100)
    if abs(float(c) - x) <= 1e-12 * x:
        return _over(c, False, den)
    return f"{x:.10g}/{den}"


def _times(c: Fraction, g: bool, rest: str) -> str:
    head = _coef(c, g)
    if not rest:
        return head
    return rest if head == "1" else f"{head}·{rest}"


def variance_scaling(
    name: str, scale: Fraction | None, mode: str, distribution: str, aliases: str
) -> Scheme:
    """A preset of the one fan-based mechanism; its formula text is derived from the triple.

    ``scale=None`` means gain^2 of the activation (written g²), as torch's kaiming_* with
    ``nonlinearity`` set to the network's activation.
    """
    g = scale is None
    c = Fraction(1) if g else scale
    v_coef, den = (2 * c, "(fan_in+fan_out)") if mode == "fan_avg" else (c, mode)
    v, v3 = _over(v_coef, g, den), _over(3 * v_coef, g, den)
    law, bound = {
        "normal": (f"N(0, {v})", f"std √({v})"),
        "uniform": (f"U(±√({v3}))", f"bound √({v3})"),
        "truncnormal": (
            f"N(0, ({v})/0.7737) cut at ±2 std (realised variance {v})",
            f"pre-cut std √({v})/0.87963, cut at ±2 pre-cut std",
        ),
    }[distribution]
    factor, rest = {
        "fan_in": (c / 2, ""),
        "fan_out": (c / 2, "fan_in/fan_out"),
        "fan_avg": (c, "fan_in/(fan_in+fan_out)"),
    }[mode]
    relu = _times(factor, g, rest)
    text = dict(_TEXT[name])
    if g:
        relu += f" ({_times(2 * factor, False, rest)} with the ReLU gain √2)"
        text["summary"] += (
            " g is the activation's gain (√2 ReLU, √(2/(1+a²)) leaky ReLU, 1 linear, 5/3 tanh)"
            " unless --gain is given."
        )
    else:
        text["summary"] += f" --gain g replaces the scale {c} by g²."
    text.update(law=law, variance=v, bound_or_std=bound, relu_factor=relu)
    scale = None if g else float(scale)
    return Scheme(
        name, tuple(aliases.split()), "variance_scaling", scale, mode, distribution, **text
    )


def fixed(name: str, distribution: str, default_std: float, aliases: str) -> Scheme:
    """A fan-independent law with multiplier std (``--std``); text from the table."""
    text = dict(_TEXT[name], default_std=default_std)
    return Scheme(name, tuple(aliases.split()), "fixed", None, None, distribution, **text)


def whole_matrix(name: str, kind: str, aliases: str) -> Scheme:
    """Orthogonal (gain x Haar) or LSUV (its gain-1 orthogonal pre-init, rescaled from data)."""
    return Scheme(name, tuple(aliases.split()), kind, None, None, "orthogonal", **_TEXT[name])


_FIELDS = ("summary", "law", "variance", "bound_or_std", "relu_factor", "frameworks", "traps")


def _parse_text(block: str) -> dict[str, dict[str, str]]:
    """``[name]`` headers, ``field: text`` lines, indented continuation lines."""
    entries: dict[str, dict[str, str]] = {}
    for line in block.strip().splitlines():
        head, _, value = line.strip().partition(": ")
        if line.startswith("["):
            entry = entries.setdefault(line.strip("[] "), {})
        elif not line.startswith(" ") and head in _FIELDS:
            field = head
            entry[field] = value
        else:
            entry[field] += " " + line.strip()
    return entries


# The listing text of each scheme (`propagate schemes`); for variance-scaling presets law,
# variance, bound and ReLU factor are derived from the (scale, mode, distribution) triple.
_TEXT = _parse_text("""
[gauss]
summary: Fixed-std Gaussian N(0, σ²), σ = 0.01 unless --std (AlexNet's choice).
law: N(0, σ²)
variance: σ²
bound_or_std: std σ (default 0.01)
relu_factor: ½·fan_in·σ² (1 only at fan_in = 2/σ², 20 000 at σ = 0.01)
frameworks: AlexNet σ = 0.01 (Krizhevsky, Sutskever & Hinton 2012); Caffe gaussian filler;
  torch normal_ (default std 1); Keras RandomNormal (0.05); JAX normal (1e-2)
traps: Defaults differ by framework (0.01, 0.05, 1). At fan_in 64 and σ = 0.01 the factor is
  0.0032: 30 layers keep ~1e-75 of the input variance, below float32's smallest normal number.
[torch]
summary: torch layer default U(±1/√fan_in) = kaiming_uniform_(a=√5), gain √(1/3).
frameworks: torch nn.Linear/nn.ConvNd weight (bias U(±1/√fan_in) too); Lua torch
  nn.Linear:reset(); Glorot & Bengio's 'standard' heuristic; e-lab heuristic
traps: Loses a factor 6 per ReLU layer (6^-L without bias); with torch's default bias the
  signal settles on a bias-dominated floor 2/(5n) that has forgotten the input.
[lecun-normal]
summary: LeCun normal N(0, 1/fan_in), untruncated.
frameworks: torch kaiming_normal_(nonlinearity='linear'); Lua nninit kaiming (gain 1); the SELU
  recipe (Klambauer et al. 2017)
traps: Keras LecunNormal, JAX lecun_normal and the Flax default are the truncated law
  (lecun-truncnormal). Loses a factor 2 per ReLU layer.
[lecun-uniform]
summary: LeCun uniform U(±√(3/fan_in)).
frameworks: Keras LecunUniform, JAX lecun_uniform; Caffe xavier filler (default variance_norm
  FAN_IN); e-lab xavier_caffe; torch kaiming_uniform_(nonlinearity='linear')
traps: Caffe's 'xavier' filler is this LeCun law, not Glorot's; with ReLU it loses a factor 2
  per layer against He (2^-L in variance).
[lecun-truncnormal]
summary: LeCun truncated normal, Keras/JAX variance scaling (1, fan_in, truncated_normal).
frameworks: Keras LecunNormal; JAX lecun_normal; Flax Dense/Conv default kernel init
traps: 'lecun_normal' is truncated here but untruncated in torch (lecun-normal); the lighter
  tails (μ4 2.37) narrow finite-width fluctuations.
[xavier-normal]
summary: Glorot normal N(0, 2/(fan_in+fan_out)), untruncated.
frameworks: torch xavier_normal_ (std × gain)
traps: Keras GlorotNormal and JAX glorot_normal are truncated (xavier-truncnormal). Derived for
  tanh/linear units: ½ per square ReLU layer.
[xavier-uniform]
summary: Glorot uniform U(±√(6/(fan_in+fan_out))).
frameworks: Keras default kernel init (Dense, Conv, DepthwiseConv, ConvTranspose); torch
  xavier_uniform_ (bound × gain); JAX glorot_uniform; Caffe xavier with AVERAGE; e-lab xavier
traps: Halves the ReLU signal per square layer; 'xavier' alone is ambiguous (Caffe's xavier
  filler is lecun-uniform).
[xavier-truncnormal]
summary: Glorot truncated normal, Keras/JAX variance scaling (1, fan_avg, truncated_normal).
frameworks: Keras GlorotNormal; JAX glorot_normal/xavier_normal
traps: 'glorot_normal' is truncated in Keras/JAX but not in torch (xavier-normal).
[he-normal]
summary: He normal N(0, g²/fan_in): 2/fan_in for ReLU (He et al. 2015).
frameworks: torch kaiming_normal_() defaults; Caffe msra (FAN_IN)
traps: Keras HeNormal and JAX he_normal are truncated (he-truncnormal). Keras/JAX he_* always
  use scale 2 and torch kaiming_* default to the ReLU gain √2 whatever the network's activation;
  here g follows --activation (same for ReLU). torch calculate_gain('leaky_relu') without a
  slope uses a = 0.01.
[he-uniform]
summary: He uniform U(±√(3g²/fan_in)): √(6/fan_in) for ReLU.
frameworks: torch kaiming_uniform_() defaults; Keras HeUniform; JAX he_uniform
traps: torch's layer default is kaiming_uniform_ too, but with a = √5 (scheme torch). Keras/JAX
  he_uniform always use scale 2; here g follows --activation (same for ReLU).
[he-truncnormal]
summary: He truncated normal, realised variance g²/fan_in (Keras/JAX: scale 2).
frameworks: Keras HeNormal; JAX he_normal/kaiming_normal
traps: Keras/JAX fix the scale at 2 whatever the activation; here g follows --activation
  (same for ReLU; pass --gain 1.41421356 to reproduce Keras under leaky ReLU).
[he-fan-out]
summary: He with fan_out N(0, g²/fan_out): preserves the backward signal. Any variance-scaling
  scheme takes --mode the same way.
frameworks: torch kaiming_normal_(mode='fan_out'); Keras/JAX VarianceScaling(2, 'fan_out', ...);
  Caffe msra with FAN_OUT
traps: The forward factor fan_in/fan_out telescopes over a stack (not exponential); torch
  overcounts grouped-conv fan_out by the group count (issue #23854).
[elab-kaiming]
summary: e-lab 'kaiming': He's scale over fan_avg, U(±√(12/(fan_in+fan_out))) for ReLU.
frameworks: e-lab torch-toolbox 'kaiming'
traps: A naming trap: a fan_avg law, equal to He only when fan_in = fan_out.
[keras-truncated-normal]
summary: Fixed truncated normal N(0, σ²) cut at ±2σ with no correction; σ = 0.05 unless --std.
law: N(0, σ²) cut at ±2σ
variance: 0.7737·σ²
bound_or_std: pre-cut std σ (default 0.05), cut ±2σ
relu_factor: 0.3869·fan_in·σ²
frameworks: Keras TruncatedNormal (default 0.05); JAX truncated_normal (default 1e-2); torch
  trunc_normal_ only with a = -2σ, b = 2σ
traps: The realised std is 0.8796σ, not σ; some TensorFlow 1.x versions drew variance-scaling
  'normal' this way (0.7737·scale/fan).
[torch-trunc-normal]
summary: torch trunc_normal_: N(0, σ²) cut at ABSOLUTE bounds [a, b], no correction; σ from
  --std (default 1), bounds from --trunc-bounds (default -2 2).
law: N(0, σ²) cut to [a, b]
variance: σ²·Var(N(0,1) cut to [a/σ, b/σ]); ≈ σ² when |a|, |b| ≫ σ
bound_or_std: pre-cut std σ; absolute bounds a, b
relu_factor: ½·fan_in·v
frameworks: torch nn.init.trunc_normal_(mean=0, std=1, a=-2, b=2); ViT/timm call it with
  std=0.02
traps: a, b are absolute, not in std units: std=0.02 with the default a=-2, b=2 cuts at ±100σ
  and is effectively untruncated. torch samples in the tensor dtype (float32 clamps rare values
  to the bound, pytorch issue #155588); this tool samples float64. Only symmetric bounds are
  accepted (the theory assumes zero-mean weights).
[orthogonal]
summary: gain × Haar orthogonal (QR of a Gaussian, signs fixed by sign(diag R)); gain defaults
  to the activation's (√2 for ReLU); --gain 1 gives the framework default.
law: gain × Haar-orthogonal (fan_out, fan_in) matrix
variance: gain²/max(fan_in, fan_out)
bound_or_std: every singular value = gain
relu_factor: ½·gain²·min(1, fan_in/fan_out) (1 with gain √2 when fan_out ≤ fan_in)
frameworks: torch orthogonal_(gain=1); Keras Orthogonal(gain=1); JAX orthogonal(scale=1); LSUV
  pre-init; Saxe, McClelland & Ganguli 2014
traps: torch orthogonal_, Keras Orthogonal and JAX orthogonal default to gain 1, NOT the
  activation gain used here: pass --gain 1 to reproduce them (ReLU then halves the signal per
  layer). When fan_out > fan_in rows are not unit vectors and the factor drops to
  ½·gain²·fan_in/fan_out. Entry μ4 = 3n/(n+2), n = max(fan_in, fan_out).
[lsuv]
summary: LSUV (Mishkin & Matas 2016): orthogonal pre-init with gain 1, then the engine rescales
  each layer from a data batch until its output variance is 1.
law: orthogonal (gain 1) pre-init, rescaled from data
variance: data-dependent (pre-init 1/max(fan_in, fan_out))
bound_or_std: pre-init singular values 1
relu_factor: pre-activation variance ≈ 1 by construction
frameworks: Mishkin & Matas, All you need is a good init (arXiv:1511.06422): Caffe code
  (|Var-1| ≤ 0.02, 20 iterations); LSUV-pytorch (|std-1| ≤ 0.1, 10 attempts)
traps: layer() gives only the pre-init; the engine rescales it. A layer whose output variance
  is 0 cannot be rescaled: the reference codes divide by 0 and silently emit inf/NaN; here the
  layer is flagged as collapsed.
""")

# Presets: (scale, mode, distribution) triples over one mechanism, then the fixed and
# whole-matrix laws. Aliases are framework spellings ('_' and '-' are the same, any case); a
# fixed law's alias must share its default std too (Caffe gaussian and JAX truncated_normal
# default to 1 and 1e-2, so they are not aliases of gauss and keras-truncated-normal).
_PRESETS = (
    fixed("gauss", "normal", 0.01, "alexnet fixed-normal"),
    variance_scaling("torch", Fraction(1, 3), "fan_in", "uniform",
                     "torch-default pytorch-default kaiming-uniform-a-sqrt5 lua-torch"
                     " e-lab-heuristic"),
    variance_scaling("lecun-normal", Fraction(1), "fan_in", "normal",
                     "kaiming-normal-linear nninit-kaiming"),
    variance_scaling("lecun-uniform", Fraction(1), "fan_in", "uniform",
                     "caffe-xavier e-lab-xavier-caffe keras-lecun-uniform jax-lecun-uniform"
                     " kaiming-uniform-linear"),
    variance_scaling("lecun-truncnormal", Fraction(1), "fan_in", "truncnormal",
                     "keras-lecun-normal jax-lecun-normal flax-default flax"),
    variance_scaling("xavier-normal", Fraction(1), "fan_avg", "normal",
                     "glorot-normal torch-xavier-normal"),
    variance_scaling("xavier-uniform", Fraction(1), "fan_avg", "uniform",
                     "glorot-uniform keras-default e-lab-xavier caffe-xavier-average"
                     " torch-xavier-uniform jax-glorot-uniform"),
    variance_scaling("xavier-truncnormal", Fraction(1), "fan_avg", "truncnormal",
                     "glorot-truncnormal keras-glorot-normal jax-glorot-normal"),
    variance_scaling("he-normal", None, "fan_in", "normal",
                     "kaiming-normal msra caffe-msra torch-kaiming-normal"),
    variance_scaling("he-uniform", None, "fan_in", "uniform",
                     "kaiming-uniform torch-kaiming-uniform keras-he-uniform jax-he-uniform"),
    variance_scaling("he-truncnormal", None, "fan_in", "truncnormal",
                     "keras-he-normal jax-he-normal"),
    variance_scaling("he-fan-out", None, "fan_out", "normal",
                     "kaiming-normal-fan-out msra-fan-out"),
    variance_scaling("elab-kaiming", None, "fan_avg", "uniform", "e-lab-kaiming"),
    fixed("keras-truncated-normal", "truncnormal", 0.05,
          "keras-truncnormal truncated-normal"),
    fixed("torch-trunc-normal", "truncnormal-abs", 1.0, "trunc-normal torch-truncnormal"),
    whole_matrix("orthogonal", "orthogonal",
                 "saxe torch-orthogonal keras-orthogonal jax-orthogonal"),
    whole_matrix("lsuv", "lsuv", "mishkin-matas"),
)  # fmt: skip

SCHEMES: dict[str, Scheme] = {s.name: s for s in _PRESETS}

# Labels that mean different formulas in different frameworks: refused, with the candidates.
_AMBIGUOUS = {
    "xavier": "xavier-uniform, xavier-normal, or lecun-uniform (Caffe's xavier filler)",
    "glorot": "xavier-uniform, xavier-normal, xavier-truncnormal",
    "kaiming": "he-normal, he-uniform (torch), or elab-kaiming (e-lab: fan_avg)",
    "he": "he-normal, he-uniform, he-truncnormal",
    "lecun": "lecun-normal, lecun-uniform, lecun-truncnormal",
    "normal": "gauss (fixed std), he-normal, lecun-normal, or *-truncnormal (Keras 'normal')",
    "uniform": "torch, he-uniform, lecun-uniform, xavier-uniform (torch uniform_ is U(0, 1))",
    "default": "torch (PyTorch), xavier-uniform (Keras), lecun-truncnormal (Flax)",
}


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-").strip("-")


def _build_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for scheme in _PRESETS:
        for spelling in (scheme.name, *scheme.aliases):
            key = _key(spelling)
            if key in index or key in _AMBIGUOUS:
                raise RuntimeError(f"scheme spelling {spelling!r} is registered twice")
            index[key] = scheme.name
    return index


_INDEX = _build_index()


def lookup(name: str) -> Scheme:
    """The scheme for a canonical name or alias (case-insensitive, '_' == '-')."""
    if not isinstance(name, str):
        raise InputError(f"scheme {name!r} is not a name; choose one of: {', '.join(SCHEMES)}")
    key = _key(name)
    if key in _INDEX:
        return SCHEMES[_INDEX[key]]
    if key in _AMBIGUOUS:
        raise InputError(
            f"scheme {name!r} means different formulas in different frameworks;"
            f" choose one of: {_AMBIGUOUS[key]}"
        )
    close = difflib.get_close_matches(key, _INDEX, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise InputError(
        f"unknown scheme {name!r}{hint}; choose one of: {', '.join(SCHEMES)}"
        " (aliases: see `propagate schemes`)"
    )


def scheme_table() -> list[dict]:
    """One row per scheme for ``propagate schemes``: names, formula text, frameworks, traps."""
    rows = []
    for scheme in _PRESETS:
        row = dataclasses.asdict(scheme)
        row["aliases"] = list(scheme.aliases)
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------ resolution
def _positive(label: str, value: float | None) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if isinstance(value, bool) or not math.isfinite(x) or x <= 0:
        raise InputError(f"--{label} {value} is not allowed; give a finite number > 0")
    return x


def _choice(label: str, value: str, allowed: tuple[str, ...], synonyms: dict) -> str:
    key = str(value).strip().lower()
    key = synonyms.get(key.replace("_", "-"), key)
    if key not in allowed:
        raise InputError(f"unknown {label} {value!r}; choose one of: {', '.join(allowed)}")
    return key


# The overrides each kind takes (resolve_scheme keywords), and why the others do not apply.
_OVERRIDES = {
    "variance_scaling": (("dist", "gain", "mode", "std"), ""),
    "fixed": (("dist", "std"), " (a fixed-std law: set --std)"),
    "orthogonal": (("gain",), " (a law on whole matrices: set --gain)"),
    "lsuv": ((), " (it rescales its orthogonal pre-init from data)"),
}
_DIST_SYNONYMS = {"truncated-normal": "truncnormal", "untruncated-normal": "normal"}


def resolve_scheme(
    name: str,
    *,
    activation: Activation,
    dist: str | None = None,
    gain: float | None = None,
    mode: str | None = None,
    std: float | None = None,
    trunc_bounds: tuple[float, float] | None = None,
) -> InitSpec:
    """Resolve a scheme name and its overrides once, for any layer shapes.

    Args:
        name: canonical name or alias (``lookup``).
        activation: the network's activation; He-family presets and orthogonal take their
            gain from it (``Activation.torch_gain``) unless ``gain`` is given.
        dist: ``normal``, ``uniform`` or ``truncnormal`` (Keras-corrected): same variance,
            other law. Not for orthogonal or lsuv.
        gain: finite > 0; variance scaling uses scale = gain^2, orthogonal multiplies by it.
        mode: ``fan_in``, ``fan_out`` or ``fan_avg`` (variance-scaling schemes).
        std: finite > 0; a fixed per-entry std (realised) for a fan-based scheme; gauss's
            sigma; the pre-cut std of keras-truncated-normal and torch-trunc-normal.
        trunc_bounds: absolute (a, b) of torch-trunc-normal, symmetric (a = -b), default (-2, 2).

    Raises:
        InputError: unknown names, bad values, or an override the scheme has no use for.
    """
    scheme = lookup(name)
    gain, std = _positive("gain", gain), _positive("std", std)
    if dist is not None:
        dist = _choice("dist", dist, OVERRIDE_DISTRIBUTIONS, _DIST_SYNONYMS)
    if mode is not None:
        mode = _choice("mode", mode, MODES, {m.replace("_", "-"): m for m in MODES})
    given = {"dist": dist, "gain": gain, "mode": mode, "std": std, "trunc_bounds": trunc_bounds}
    takes, why = _OVERRIDES[scheme.kind]
    if scheme.distribution == "truncnormal-abs":
        takes += ("trunc_bounds",)
    for option, value in given.items():
        if value is not None and option not in takes:
            flags = ", ".join("--" + t.replace("_", "-") for t in takes) or "none"
            raise InputError(
                f"--{option.replace('_', '-')} {value} does not apply to {scheme.name}{why};"
                f" its overrides: {flags}"
            )
    clash = [f"--{k} {v}" for k, v in (("gain", gain), ("mode", mode)) if v is not None]
    if std is not None and clash:
        raise InputError(
            f"--std {std:g} fixes the variance of {scheme.name}: drop {' and '.join(clash)}"
            " or --std"
        )

    if scheme.kind in ("orthogonal", "lsuv"):
        if scheme.kind == "lsuv":
            g, source = 1.0, "scheme"
        elif gain is not None:
            g, source = gain, "override"
        else:
            g, source = activation.torch_gain, "activation"
        return InitSpec(
            scheme, "orthogonal", None, None, g, None, gain_source=source, activation=activation
        )
    distribution = dist or scheme.distribution
    if scheme.kind == "fixed":
        a = b = None
        if scheme.distribution == "truncnormal-abs":
            a, b = _check_bounds(_TORCH_TRUNC_BOUNDS if trunc_bounds is None else trunc_bounds)
        s = scheme.default_std if std is None else std
        return InitSpec(scheme, distribution, None, None, None, s, a, b, activation=activation)
    if std is not None:
        return InitSpec(scheme, distribution, None, None, None, std, activation=activation)
    if gain is not None:
        g, source = gain, "override"
    elif scheme.scale is None:
        g, source = activation.torch_gain, "activation"
    else:
        g, source = math.sqrt(scheme.scale), "scheme"
    scale = scheme.scale if source == "scheme" else g * g
    mode = mode or scheme.mode
    return InitSpec(
        scheme, distribution, mode, scale, g, None, gain_source=source, activation=activation
    )


def _check_bounds(bounds) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in bounds)
    except (TypeError, ValueError):
        raise InputError(
            f"--trunc-bounds {bounds!r} is not allowed; give two numbers a b"
        ) from None
    if not (math.isfinite(a) and math.isfinite(b) and b > 0 and a == -b):
        raise InputError(
            f"--trunc-bounds {a:g} {b:g} is not allowed; give finite symmetric bounds"
            " -b b with b > 0 (the theory assumes zero-mean weights)"
        )
    return a, b


# ------------------------------------------------------------------------------ sampling
def sample_unit(init: LayerInit, gen: np.random.Generator, k: int) -> np.ndarray:
    """Draw k unit-scale matrices W_hat, float64 (k, fan_out, fan_in); W = init.std * W_hat.

    Trial-major with a fixed number of variates per trial, so the first k trials are the same
    whatever k (``rng``'s prefix property): normal and orthogonal use ``standard_normal``,
    uniform and the truncated normals ``random`` through an inverse CDF (no rejection).
    """
    shape = (k, init.fan_out, init.fan_in)
    if init.distribution == "normal":
        return gen.standard_normal(shape)
    if init.distribution == "uniform":
        u = gen.random(shape)
        u *= 2.0
        u -= 1.0
        u *= _SQRT3  # unit variance
        return u
    if init.distribution in ("truncnormal", "truncnormal-abs"):
        return _truncnormal_unit(init.hi, gen.random(shape))
    if init.distribution == "orthogonal":
        return _haar_orthogonal(gen, k, init.fan_out, init.fan_in)
    raise InputError(f"unknown distribution {init.distribution!r}; one of {DISTRIBUTIONS}")


_NARROW_CUT = 1e-4  # a cut at +-c below this (in std units) is sampled as uniform


def _truncnormal_unit(c: float, u: np.ndarray) -> np.ndarray:
    """N(0, 1) cut to [-c, c] by inverse CDF of the uniforms u (overwritten).

    Symmetric form: the quantile is taken from the nearer tail (1 - u is exact for u > 1/2), so
    ndtri always sees p <= 1/2 and the upper tail is as precise as the lower one.
    """
    if c < _NARROW_CUT:
        # Phi(-c) + u * mass would lose u's digits against 1/2 (weights all 0 at c ~ 1e-17);
        # over so narrow a window the density varies by c^2 / 2 < 5e-9: uniform to that order
        u *= 2 * c
        u -= c
        return u
    mass = math.erf(c / math.sqrt(2.0))  # P(|Z| <= c), exact where 1 - 2 Phi(-c) would cancel
    upper = u > 0.5
    np.subtract(1.0, u, out=u, where=upper)
    u *= mass
    u += ndtr(-c)
    x = ndtri(u)
    np.negative(x, out=x, where=upper)
    return np.clip(x, -c, c, out=x)  # rounding may step an ulp past the bound


def _haar_orthogonal(gen: np.random.Generator, k: int, rows: int, cols: int) -> np.ndarray:
    """k Haar-orthogonal (rows, cols) matrices: QR of a (max, min) Gaussian, sign-fixed.

    As torch ``orthogonal_``: columns scaled by sign(diag R) so the law is exactly Haar
    (Mezzadri 2007), transposed when rows < cols; orthonormal columns (tall) or rows (wide).
    """
    big, small = max(rows, cols), min(rows, cols)
    if k == 0:
        return np.empty((0, rows, cols))
    q, r = np.linalg.qr(gen.standard_normal((k, big, small)))
    signs = np.sign(np.diagonal(r, axis1=-2, axis2=-1))
    signs[signs == 0] = 1.0
    q *= signs[:, None, :]
    return q if rows >= cols else np.ascontiguousarray(np.swapaxes(q, -1, -2))
