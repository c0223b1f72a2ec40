# The CUDA driver (src/drivers/cuda/): built into cortado_core when CMake finds nvcc (the
# language is enabled in CMakeLists.txt, before the targets, which take its architectures), so CI
# compiles it (-Werror on the host side and on nvcc's own warnings) though its machines have no
# GPU; a machine without nvcc, or -DCT_CUDA=OFF, builds the CPU-only library, whose "cuda:N"
# devices are refused with a message saying so. Nothing CUDA-specific lives outside
# src/drivers/cuda/ but src/drivers/driver.c's hook, compiled with CT_HAVE_CUDA here.
#
# Architectures: native code for sm_80 (A100) and sm_90 (H100), plus compute_90 PTX so newer
# GPUs JIT-compile it. Two SASS targets keep nvcc's time on CI small (the kernels are one list of
# small bodies), and an H100 or A100 never waits for a JIT at start-up, which a PTX-only build
# would cost every fresh GPU machine. CUDA 13 has dropped everything before sm_75; pass
# -DCMAKE_CUDA_ARCHITECTURES=... for other GPUs.
if(CT_CUDA AND CMAKE_CUDA_COMPILER)
  find_package(CUDAToolkit REQUIRED)
  file(GLOB CT_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/drivers/cuda/*.c
       ${CMAKE_CURRENT_SOURCE_DIR}/src/drivers/cuda/*.cu)
  target_sources(cortado_core PRIVATE ${CT_CUDA_SOURCES})
  target_compile_definitions(cortado_core PRIVATE CT_HAVE_CUDA=1)
  target_compile_options(cortado_core PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:SHELL:-Werror all-warnings>
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra,-Werror>)
  # cuBLAS is dlopen'ed by the first CUDA driver (src/drivers/cuda/cublas_dl.c), so a process that
  # never asks for a GPU does not load it (it adds about 2 s and 200 MB to every start).
  target_link_libraries(cortado_core PUBLIC CUDA::cudart_static ${CMAKE_DL_LIBS})
  set(CT_HAVE_CUDA ON)
  message(STATUS "CUDA driver: nvcc ${CMAKE_CUDA_COMPILER_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}")
else()
  set(CT_HAVE_CUDA OFF)
  message(STATUS "CUDA driver: not built (no nvcc found, or CT_CUDA=OFF)")
endif()
