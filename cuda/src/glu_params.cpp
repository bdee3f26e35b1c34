// glu_params.cpp: the GLU-variant parameters (fused_swiglu.h, fsg_glu_params): their default and
// their checks. The math itself is in activation_math.h, shared by both backends.
#include "glu_params.h"

#include <cmath>

#include "guard.h"

namespace fsg {

fsg_status parse_glu_params(const Call& call, const fsg_glu_params* in, fsg_glu_params* out) {
  *out = kPlainGlu;
  if (in == nullptr) return FSG_OK;
  if (in->activation < FSG_ACT_SILU || in->activation > FSG_ACT_IDENTITY) {
    set_error("%s: act.activation: expected 0 (silu), 1 (gelu tanh), 2 (gelu erf), 3 (relu) or 4 (identity), got %d",
              call.fn, in->activation);
    return FSG_ERR_INVALID_ARGUMENT;
  }
  const struct {
    const char* name;
    float value;
  } fields[] = {{"alpha", in->alpha}, {"limit", in->limit}, {"up_offset", in->up_offset},
                {"gate_scale", in->gate_scale}, {"out_scale", in->out_scale}};
  for (const auto& f : fields) {
    if (!std::isfinite(f.value)) {
      set_error("%s: act.%s: expected a finite number, got %g", call.fn, f.name, static_cast<double>(f.value));
      return FSG_ERR_INVALID_ARGUMENT;
    }
  }
  if (in->limit < 0.0f) {
    set_error("%s: act.limit: expected >= 0 (0: no clamping), got %g", call.fn, static_cast<double>(in->limit));
    return FSG_ERR_INVALID_ARGUMENT;
  }
  *out = *in;
  return FSG_OK;
}

}  // namespace fsg

extern "C" FSG_API fsg_glu_params fsg_glu_params_default(void) { return fsg::kPlainGlu; }
