# bench.cpu_pair_latency.smoke: the probe prints one latency in a plausible range for
# CPUs 0 and 1, exits with 1 when it cannot pin a thread and with 2 on arguments it
# cannot use.
execute_process(COMMAND ${PROBE} --round-trips 2000 --trials 3
                OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT out MATCHES "^one_way_ns=([0-9]+\\.[0-9]) cpus=0,1\n$")
  message(FATAL_ERROR "unexpected result ${rc}: '${out}'")
endif()
set(ns ${CMAKE_MATCH_1})
# A transfer between two CPUs takes tens to hundreds of nanoseconds; 0 or seconds
# would mean the two threads never took turns.
if(ns LESS 5 OR ns GREATER 100000)
  message(FATAL_ERROR "one-way latency out of range: ${ns} ns")
endif()
execute_process(COMMAND ${PROBE} --cpus 0,1023 --round-trips 10
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
if(NOT rc EQUAL 1)
  message(FATAL_ERROR "a CPU this machine does not have gave ${rc}, not 1")
endif()
foreach(bad "--cpus;0,0" "--cpus;x" "--cpus;0,1x" "--cpus;0,1,2" "--round-trips;0"
        "--round-trips;10x" "--trials;-1" "--trials" "--frobnicate")
  execute_process(COMMAND ${PROBE} ${bad} RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
  if(NOT rc EQUAL 2)
    message(FATAL_ERROR "'${bad}' gave ${rc}, not 2")
  endif()
endforeach()
