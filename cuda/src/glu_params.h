// glu_params.h: checks an op's fsg_glu_params (NULL: plain SwiGLU).
#pragma once
#include "tensor_view.h"

namespace fsg {

fsg_status parse_glu_params(const Call& call, const fsg_glu_params* in, fsg_glu_params* out);

}  // namespace fsg
