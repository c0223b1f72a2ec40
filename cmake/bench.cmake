# Benchmarks (bench/): built with the project, run by bench/*.sh, never by the test suite.
add_executable(lowering_bench ${CMAKE_CURRENT_SOURCE_DIR}/bench/lowering_bench.c)
target_link_libraries(lowering_bench PRIVATE cortado_core)
add_executable(sgemm_roof ${CMAKE_CURRENT_SOURCE_DIR}/bench/sgemm_roof.c)
target_link_libraries(sgemm_roof PRIVATE cortado_core)
add_executable(fc_bench ${CMAKE_CURRENT_SOURCE_DIR}/bench/fc_bench.c)
target_link_libraries(fc_bench PRIVATE cortado_core)
add_executable(scaling_bench ${CMAKE_CURRENT_SOURCE_DIR}/bench/scaling_bench.c)
target_link_libraries(scaling_bench PRIVATE cortado_core)
