// Programmatic dependent launch (Hopper), host side: the kernel's blocks may
// be scheduled while the grid before it on the stream finishes; the kernel
// waits for that grid (GridDependencyWait, mma_ops.cuh) before it reads what
// the grid wrote. Where the attribute is refused, a plain launch.
#ifndef STRATA_KERNELS_DEPENDENT_LAUNCH_CUH_
#define STRATA_KERNELS_DEPENDENT_LAUNCH_CUH_

#include <cuda_runtime.h>

namespace strata::kernels {

template <typename Kernel, typename Args>
cudaError_t LaunchDependent(Kernel kernel, dim3 grid, dim3 block, int smem, cudaStream_t stream,
                            const Args& args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attr;
  config.numAttrs = 1;
  if (cudaLaunchKernelEx(&config, kernel, args) == cudaSuccess) return cudaGetLastError();
  (void)cudaGetLastError();  // clear the refusal, launch plainly
  kernel<<<grid, block, smem, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace strata::kernels

#endif  // STRATA_KERNELS_DEPENDENT_LAUNCH_CUH_
