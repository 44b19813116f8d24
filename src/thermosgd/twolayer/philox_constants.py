"""The constants of the Philox normals (:mod:`thermosgd.twolayer.philox` documents them), in one place for
the compiled loop (:mod:`thermosgd.twolayer._kernels`) and its NumPy twin, without either importing the other."""

import math

#: Philox4x32's multipliers and Weyl key increments (Random123).
M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
ROUNDS = 10

#: 2⁻³²: 32-bit words to uniforms.
TWO_M32 = 2.0**-32
#: ln 2 split so that e·LN2_HI is exact for |e| < 2¹¹ (fdlibm's split).
LN2_HI, LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
#: √2: m ∈ [1, 2) above it is halved, so m ∈ [√½, √2).
SQRT2 = math.sqrt(2.0)
#: 2/(2k + 1), k = 10..0: ln m = s·Σ_k 2 s^{2k}/(2k + 1), s = (m − 1)/(m + 1), |s| ≤ 0.1716 (m ∈ [√½, √2)).
LOG_COEFS = tuple(2.0 / (2 * k + 1) for k in range(10, -1, -1))
#: (−1)^k/(2k + 1)! and (−1)^k/(2k)!, k = 9..0: sin a and cos a for |a| ≤ π/4 (truncation below 10⁻¹⁹).
SIN_COEFS = tuple((-1.0) ** k / math.factorial(2 * k + 1) for k in range(9, -1, -1))
COS_COEFS = tuple((-1.0) ** k / math.factorial(2 * k) for k in range(9, -1, -1))
HALF_PI = math.pi / 2
