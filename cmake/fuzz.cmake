# libFuzzer targets (fuzz/fuzz_*.c), built with clang when CT_FUZZ is on:
#   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang-14 -DCT_FUZZ=ON
# The whole library is then compiled with ASan + UBSan and libFuzzer's coverage instrumentation;
# each target is a CTest test (label "fuzz") that runs CT_FUZZ_SECONDS on its seed corpus
# (fuzz/corpus/<target>/, read only) plus a working corpus in the build tree, and fails on any
# crash, leak, sanitizer report, input taking over 60 s, or allocation over the RSS limit.
option(CT_FUZZ "Build the libFuzzer targets in fuzz/ (needs clang)" OFF)
set(CT_FUZZ_SECONDS 20 CACHE STRING "Seconds each fuzz target runs under ctest")

if(CT_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "CT_FUZZ needs clang: configure with -DCMAKE_C_COMPILER=clang-14")
  endif()
  set(CT_FUZZ_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g)
  # PUBLIC: everything that links the library (the CLI, the tests) carries the sanitizers too.
  # C only: nvcc hands its options to gcc, which knows no fuzzer-no-link (the CUDA driver's
  # files are not what the fuzzers reach).
  target_compile_options(cortado_core PUBLIC "$<$<COMPILE_LANGUAGE:C>:${CT_FUZZ_FLAGS};-fsanitize=fuzzer-no-link>")
  target_link_options(cortado_core PUBLIC -fsanitize=address,undefined)

  file(GLOB CT_FUZZ_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_*.c)
  set(CT_FUZZ_TARGETS)
  foreach(src ${CT_FUZZ_SOURCES})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src})
    target_link_libraries(${name} PRIVATE cortado_core)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    list(APPEND CT_FUZZ_TARGETS ${name})

    set(seeds ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/${name})
    set(work ${CMAKE_CURRENT_BINARY_DIR}/fuzz-corpus/${name})
    set(artifacts ${CMAKE_CURRENT_BINARY_DIR}/fuzz-artifacts)
    file(MAKE_DIRECTORY ${work} ${artifacts})
    set(dict)
    string(REGEX REPLACE "^fuzz_" "" short ${name})
    if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/${short}.dict)
      set(dict -dict=${CMAKE_CURRENT_SOURCE_DIR}/fuzz/${short}.dict)
    elseif(name MATCHES "prototxt" AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/prototxt.dict)
      set(dict -dict=${CMAKE_CURRENT_SOURCE_DIR}/fuzz/prototxt.dict)
    endif()
    # New inputs go to the first directory (the build tree's), never into the repository.
    add_test(NAME ${name}
      COMMAND ${name} -max_total_time=${CT_FUZZ_SECONDS} -rss_limit_mb=2048 -timeout=60
              -print_final_stats=1 -artifact_prefix=${artifacts}/${name}- ${dict} ${work} ${seeds})
    set_tests_properties(${name} PROPERTIES LABELS fuzz
      TIMEOUT 600
      ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
  endforeach()
  add_custom_target(fuzz_all DEPENDS ${CT_FUZZ_TARGETS})
endif()

# The binary seeds are written by the library itself (fuzz/gen_corpus.c):
#   cmake --build build-fuzz --target ct_gen_corpus && build-fuzz/ct_gen_corpus fuzz/corpus
if(CT_FUZZ)
  add_executable(ct_gen_corpus ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/gen_corpus.c)
  target_link_libraries(ct_gen_corpus PRIVATE cortado_core)
endif()
