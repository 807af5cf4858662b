%%% @doc `make bench-scale': starts many instances of aos-2-pure-xs in one VM (10,000 by
%%% default; `SCALE_INSTANCES' overrides), runs one Eval message on each, then stops them
%%% all, and prints what each instance costs; then does it all again, to show whether
%%% what the first wave left behind adds up. `SCALE_FROM=snapshot' starts each instance
%%% from one booted snapshot (`restore'), as AO processes are: its memory's pages are
%%% then shared until written, which RSS counts once per instance and PSS (each shared
%%% page divided among its mappings) once in all. Not a test: nothing here asserts. A failed
%%% start or message ends that phase or is counted, so the rows are printed at any limit.
-module(hb_beamr_bench_scale).
-export([main/0]).

-define(AOS, "fixtures/hyperbeam/aos-2-pure-xs.wasm").

%% @doc Runs the two waves and prints their rows; `error' (and says why) when the AOS
%% module is not found under ../shared.
-spec main() -> ok | error.
main() ->
    case hb_beamr_test_util:shared_file(?AOS) of
        undefined ->
            io:format("make bench-scale needs ~s under ../shared (or SHARED=DIR): nothing measured~n", [?AOS]),
            error;
        Wasm ->
            scale(list_to_integer(os:getenv("SCALE_INSTANCES", "10000")), Wasm)
    end.

scale(N, Wasm) ->
    %% The module compiled and cached once, so starts measure instantiation.
    {ok, Warm, _, _} = hb_beamr:start(Wasm),
    <<_/binary>> = hb_beamr_aos:eval(Warm, <<"Booted = true">>),
    {ok, Booted} = hb_beamr:snapshot(Warm),
    hb_beamr:stop(Warm),
    Opts = case os:getenv("SCALE_FROM") of
               "snapshot" -> #{restore => Booted};
               _ -> #{}
           end,
    io:format("instances start ~s~n", [case Opts of
                                           #{restore := _} -> "from one booted snapshot";
                                           _ -> "fresh"
                                       end]),
    %% The bench's own measuring run once, so that the baseline has the code it loads:
    %% loading code later grows the literal area by a 1 MiB carrier.
    _ = wasm_memory_resident_bytes(),
    %% Settled as the RSS after stopping is, so that memory the warm-up frees late (the
    %% reaper, ERTS's allocators) counts in neither reading.
    Base = settle_rss(usage(), 0),
    #{started := Started, start_us := StartUs, eval_us := EvalUs, failed := Failed, after_start := AfterStart,
      after_eval := AfterEval, touched := Touched, settle_us := SettleUs, stopped := Stopped} = wave(Wasm, Opts, N, Base),
    %% A second wave shows whether what the first left behind is kept for reuse (allocator
    %% caches) or adds up (a leak).
    #{stopped := Stopped2} = wave(Wasm, Opts, N, Base),
    Per = fun(Key, From) -> (maps:get(Key, From) - maps:get(Key, Base)) / max(Started, 1) end,
    io:format("instances started: ~b of ~b~s; Eval failed on ~b~n",
              [Started, N, if Started < N -> " (start failed after that)"; true -> "" end, Failed]),
    hb_beamr_bench_rows:print([{"start rate (module cached)", Started / (StartUs / 1.0e6), ">= 1000", "/s"},
          {"Eval \"1 + 1\" on each, mean", EvalUs / max(Started, 1) / 1000, "", "ms"},
          {"RSS per instance after start", Per(rss_mb, AfterStart), "", "MiB"},
          {"RSS per instance after the message", Per(rss_mb, AfterEval), "", "MiB"},
          {"PSS per instance after start", Per(pss_mb, AfterStart), "", "MiB"},
          {"PSS per instance after the message", Per(pss_mb, AfterEval), "", "MiB"},
          {"  of which touched wasm memory (mean)", Touched / max(Started, 1) / 1048576, "", "MiB"},
          {"  RSS beyond touched wasm memory", Per(rss_mb, AfterEval) - Touched / max(Started, 1) / 1048576,
           "<= 2", "MiB"},
          {"threads per instance", Per(threads, AfterEval), "", ""},
          {"memory mappings per instance", Per(maps, AfterEval), "", ""},
          {"total memory mappings with all live (limit 65,530)", float(maps:get(maps, AfterEval)), "", ""},
          {"RSS before start / all live / after stop", io_lib:format("~.1f / ~.1f / ~.1f",
              [maps:get(rss_mb, Base), maps:get(rss_mb, AfterEval), maps:get(rss_mb, Stopped)]), "", "MiB"},
          {"RSS after stop vs before", maps:get(rss_mb, Stopped) / maps:get(rss_mb, Base), "<= 1.1", "x"},
          {"  kept after stop", maps:get(rss_mb, Stopped) - maps:get(rss_mb, Base), "", "MiB"},
          {"  time for RSS to settle after stop", SettleUs / 1.0e6, "", "s"},
          {"RSS after a second wave (start, message, stop)", maps:get(rss_mb, Stopped2), "", "MiB"},
          {"  kept after the second wave beyond the first", maps:get(rss_mb, Stopped2) - maps:get(rss_mb, Stopped),
           "", "MiB"}]).

%% Starts up to N instances, runs one message on each, stops them all and waits for memory
%% to settle; what each phase took and what it left.
-spec wave(binary(), map(), pos_integer(), map()) -> map().
wave(Wasm, Opts, N, Base) ->
    %% The instances are started, messaged and stopped from a process of its own, which
    %% then exits: 10,000 start results (11 KB each, garbage at once) grow the starter's
    %% heap to ~150 MB before a full collection, and what ERTS kept of that in this
    %% process would count as memory the instances left.
    Live = in_own_process(fun() -> live_wave(Wasm, Opts, N) end),
    {SettleUs, Stopped} = timer:tc(fun() -> settle(Base) end),
    Live#{settle_us => SettleUs, stopped => Stopped}.

-spec live_wave(binary(), map(), pos_integer()) -> map().
live_wave(Wasm, Opts, N) ->
    BaseTouched = wasm_memory_resident_bytes(),
    {StartUs, Instances} = timer:tc(fun() -> start_all(Wasm, Opts, N, []) end),
    AfterStart = usage(),
    {EvalUs, Failed} = timer:tc(fun() -> length([F || I <- Instances, (F = eval(I)) =/= ok]) end),
    AfterEval = usage(),
    Touched = wasm_memory_resident_bytes() - BaseTouched,
    [hb_beamr:stop(I) || I <- Instances],
    #{started => length(Instances), start_us => StartUs, eval_us => EvalUs, failed => Failed,
      after_start => AfterStart, after_eval => AfterEval, touched => Touched}.

start_all(_Wasm, _Opts, 0, Acc) ->
    lists:reverse(Acc);
start_all(Wasm, Opts, N, Acc) ->
    case hb_beamr:start(Wasm, Opts) of
        {ok, I, _, _} -> start_all(Wasm, Opts, N - 1, [I | Acc]);
        {error, Reason} ->
            io:format("start failed: ~p~n", [Reason]),
            lists:reverse(Acc)
    end.

-spec eval(hb_beamr:instance()) -> ok | {atom(), term()}.
eval(I) ->
    try hb_beamr_aos:eval(I, <<"1 + 1">>) of
        <<_/binary>> -> ok
    catch
        Class:Reason -> {Class, Reason}
    end.

%% Resident bytes of all wasm memories (see the script), counted by a perl process.
wasm_memory_resident_bytes() ->
    list_to_integer(string:trim(os:cmd("perl bench/wasm_memory_rss.pl " ++ proc("smaps")))).

%% Runs Fun in a process of its own, which exits with the result, so that the heap Fun
%% grows (starting 10,000 instances) goes with it.
in_own_process(Fun) ->
    {Pid, Ref} = spawn_monitor(fun() -> exit({result, Fun()}) end),
    receive {'DOWN', Ref, process, Pid, {result, Result}} -> Result end.

%% Threads and mappings are counted outside the VM too: with 10,000 instances the lists are
%% 10,000 and 60,000 lines long, and what reading them in the VM left in ERTS's allocators
%% counted as memory the instances left.
usage() ->
    #{rss_mb => hb_beamr_test_util:resident_mb(),
      pss_mb => hb_beamr_test_util:proportional_mb(),
      threads => count_lines("ls " ++ proc("task")),
      maps => count_lines("cat " ++ proc("maps"))}.

count_lines(Command) ->
    list_to_integer(string:trim(os:cmd(Command ++ " | wc -l"))).

proc(File) ->
    "/proc/" ++ os:getpid() ++ "/" ++ File.

%% Stopped executors exit in the background and memory is returned after them (by the
%% reaper, and by ERTS' allocators over seconds): wait until the thread count is back, then
%% until RSS stops falling (less than 1% in 2 s), for at most 60 s in all.
-spec settle(map()) -> map().
settle(Base) ->
    settle_threads(Base, 600).

-spec settle_threads(map(), non_neg_integer()) -> map().
settle_threads(Base, Tries) ->
    case maps:get(threads, usage()) =< maps:get(threads, Base) orelse Tries =:= 0 of
        true -> settle_rss(usage(), 600 - Tries);
        false -> timer:sleep(100), settle_threads(Base, Tries - 1)
    end.

-spec settle_rss(map(), non_neg_integer()) -> map().
settle_rss(Before, Waited) ->
    erlang:garbage_collect(),
    timer:sleep(2000),
    Now = usage(),
    case maps:get(rss_mb, Now) > 0.99 * maps:get(rss_mb, Before) orelse Waited >= 580 of
        true -> Now;
        false -> settle_rss(Now, Waited + 20)
    end.
