%%% @doc `make bench': prints a table of hb_beamr timings beside baselines measured in
%%% the same run. Not a test: nothing here asserts.
-module(hb_beamr_bench).
-export([main/0, state_rows/0, child_start/2, child_growth/1]).

-define(CALLS, 200000).
-define(COMPUTE_ROUNDS, 50000000).
-define(AOS_RUNS, 50).
-define(AOS, "fixtures/hyperbeam/aos-2-pure-xs.wasm").

-spec main() -> ok.
main() ->
    Aos = hb_beamr_test_util:shared_file(?AOS),
    %% The baselines run in a process of their own; the AOS rows come first in this VM, so
    %% its compiled-module cache is cold for the first start.
    Base = baselines(),
    AosRows = aos_rows(Aos, Base),
    {ok, Wat} = file:read_file("bench/bench.wat"),
    {ok, I, _, _} = hb_beamr:start(Wat),
    Compute = compute_ms(I),
    DirectCompute = maps:get("direct_compute_us", Base) / 1000,
    rows([
        {"empty NIF call (baseline)", median_us(fun() -> hb_beamr_nif:stop(self()) end), "", "", "us"},
        {"hb_beamr:call/3, trivial export", median_us(fun() -> {ok, _} = hb_beamr:call(I, "add", [1, 2]) end),
         maps:get("direct_call_ns", Base) / 1000, "<= 1.5", "us"},
        {"import round trip (wasm -> Erlang fun -> wasm)", import_round_trip_us(I),
         maps:get("direct_import_ns", Base) / 1000, "<= 3", "us"},
        {"hb_beamr_io:read/3, 16 bytes", median_us(fun() -> {ok, _} = hb_beamr_io:read(I, 0, 16) end),
         "", "", "us"},
        {"invoke_* of a table entry that returns", invoke_us(I, 1), "", "", "us"},
        {"invoke_* of a table entry that throws (longjmp), caught", invoke_us(I, 2), "", "", "us"},
        {"compute loop, 50M rounds (with interruption checks)", Compute, DirectCompute, "", "ms"},
        {"  interruption checks' cost on the compute loop", Compute / DirectCompute, "", "<= 1.05", "x"},
        {"stop/1 of a running loop until the caller has {error, stopped}", stop_latency_ms(Wat), "", "<= 10", "ms"},
        nif_row("idle", nif_durations_us(I, 0)),
        nif_row("2 busy Erlang processes", nif_durations_us(I, 2))
    ] ++ throw_rows() ++ AosRows ++ new_aos_rows() ++ gib_rows() ++ incremental_rows() ++ [
        {"  preparation passes on aos-2-pure-xs", maps:get("prepare_us", Base, 0) / 1000, "", "", "ms"}
    ]),
    hb_beamr:stop(I).

%% Median of single calls, after a warm-up.
median_us(Fun) ->
    median([time_ns(Fun) || _ <- lists:seq(1, ?CALLS)]) / 1000.

median(Samples) ->
    lists:nth(length(Samples) div 2 + 1, lists:sort(Samples)).

time_ns(Fun) ->
    Started = erlang:monotonic_time(nanosecond),
    Fun(),
    erlang:monotonic_time(nanosecond) - Started.

import_round_trip_us(I) ->
    Echo = fun(S, #{args := [X]}, _) -> {ok, [X], S} end,
    {ok, _, _} = hb_beamr:call(I, "echo_loop", [10000], Echo, ok),
    time_ns(fun() -> {ok, _, _} = hb_beamr:call(I, "echo_loop", [?CALLS], Echo, ok) end) / ?CALLS / 1000.

%% Per invoke_* of table entry `Entry', over a loop of a million in one call.
invoke_us(I, Entry) ->
    {ok, []} = hb_beamr:call(I, "invoke_loop", [Entry, 10000]),
    time_ns(fun() -> {ok, []} = hb_beamr:call(I, "invoke_loop", [Entry, 1000000]) end) / 1000000 / 1000.

compute_ms(I) ->
    {ok, _} = hb_beamr:call(I, "compute", [?COMPUTE_ROUNDS div 10]),
    time_ns(fun() -> {ok, _} = hb_beamr:call(I, "compute", [?COMPUTE_ROUNDS]) end) / 1000000.

%% Median over 20 stops of a call spinning in a loop: stop/1 until the caller's answer.
stop_latency_ms(Wat) ->
    median([begin
                {ok, I, _, _} = hb_beamr:start(Wat),
                Self = self(),
                spawn(fun() -> Self ! {stopped, hb_beamr:call(I, "compute", [-1])} end),
                timer:sleep(5),
                time_ns(fun() -> ok = hb_beamr:stop(I), receive {stopped, {error, stopped}} -> ok end end)
            end || _ <- lists:seq(1, 20)]) / 1000000.

%% How long call/3 NIFs ran (each waits at most 20 us for the answer), over 100,000 calls
%% with `Busy' Erlang processes spinning beside the caller: sorted, in microseconds. Wall
%% time: it includes the OS taking the scheduler thread's core away mid-NIF. Timed in a
%% process whose heap holds every sample, so no garbage collection runs (and is timed)
%% right after a NIF returns.
nif_durations_us(I, Busy) ->
    Spinners = [spawn(fun Spin() -> Spin() end) || _ <- lists:seq(1, Busy)],
    Words = 10000000,
    {Pid, Ref} = spawn_opt(fun() -> exit({durations, [time_ns(fun() -> hb_beamr_nif:call(I, "add", [1, 2]) end)
                                                       || _ <- lists:seq(1, 100000)]})
                           end, [monitor, {min_heap_size, Words}, {min_bin_vheap_size, Words}]),
    Durations = receive {'DOWN', Ref, process, Pid, {durations, Ds}} -> lists:sort(Ds) end,
    [exit(S, kill) || S <- Spinners],
    [D / 1000 || D <- Durations].

nif_row(Load, Sorted) ->
    Over = length([D || D <- Sorted, D > 100]),
    {io_lib:format("call/3 NIF, 100,000 calls (~s): p99.9 / max; ~b over 100 us", [Load, Over]),
     lists:nth(99900, Sorted), lists:last(Sorted), "<= 100", "us"}.

%% Throws caught, per throw, in our Emscripten fixtures (test/fixtures/emscripten): a loop
%% of 100,000 in one call of `run(Scenario)'.
throw_rows() ->
    [{Label, per_throw_us(File, Scenario), "", "", "us"}
     || {Label, File, Scenario} <-
            [{"C++ throw caught, JavaScript-style (__cxa_throw, invoke_*)", "exceptions.js-eh.wasm", 15},
             {"C++ throw caught, wasm exceptions", "exceptions.wasm-eh.wasm", 15},
             {"setjmp + longjmp, JavaScript-style (_emscripten_throw_longjmp, invoke_*)", "longjmp.js-sjlj.wasm", 4},
             {"setjmp + longjmp, wasm exceptions", "longjmp.wasm-sjlj.wasm", 4}]].

per_throw_us(File, Scenario) ->
    {ok, I, _, _} = hb_beamr:start(hb_beamr_test_util:fixture("emscripten/" ++ File)),
    Env = fun(S, #{func := "emscripten_resize_heap"}) -> {ok, [0], S} end,
    {ok, _, _} = hb_beamr:call(I, "run", [Scenario], Env, ok),
    Us = median([time_ns(fun() -> {ok, _, _} = hb_beamr:call(I, "run", [Scenario], Env, ok) end)
                 || _ <- lists:seq(1, 5)]) / 100000 / 1000,
    hb_beamr:stop(I),
    Us.

%% The newer AOS builds (Emscripten's JavaScript-style setjmp/longjmp, answered natively):
%% a fresh instance's first message (start, constructors, handle), and an Eval's handle.
new_aos_rows() ->
    lists:append([new_aos_rows(File, hb_beamr_test_util:shared_file("fixtures/hyperbeam-aot2/" ++ File))
                  || File <- ["aos-ll.wasm", "aos-dock.wasm", "aos-new.wasm"]]).

new_aos_rows(File, undefined) ->
    io:format("(~s not found under ../shared: its rows skipped)~n", [File]),
    [];
new_aos_rows(File, Wasm) ->
    {ok, Warm, _, _} = hb_beamr:start(Wasm),
    hb_beamr:stop(Warm),
    FirstMessage = median([time_ns(fun() ->
                                       {ok, X, _, _} = hb_beamr:start(Wasm),
                                       ok = hb_beamr_aos:init(X),
                                       _ = hb_beamr_aos:eval(X, <<"1 + 1">>),
                                       hb_beamr:stop(X)
                                   end) || _ <- lists:seq(1, 5)]) / 1000000,
    {ok, I, _, _} = hb_beamr:start(Wasm),
    ok = hb_beamr_aos:init(I),
    _ = hb_beamr_aos:eval(I, <<"1 + 1">>),
    Handle = median([begin
                         {ok, M, E} = hb_beamr_aos:write_message(I, <<"1 + 1">>),
                         time_ns(fun() -> {ok, _} = hb_beamr_aos:handle(I, M, E) end)
                     end || _ <- lists:seq(1, ?AOS_RUNS)]) / 1000000,
    hb_beamr:stop(I),
    [{io_lib:format("~s: start, constructors and first Eval (module seen before)", [File]), FirstMessage, "", "", "ms"},
     {io_lib:format("~s: Eval \"1 + 1\", handle only", [File]), Handle, "", "<= 1", "ms"}].

aos_rows(undefined, _Base) ->
    io:format("(aos-2-pure-xs.wasm not found under ../shared: AOS rows skipped)~n"),
    [];
aos_rows(Wasm, Base) ->
    FirstStart = time_ns(fun() -> {ok, _, _, _} = hb_beamr:start(Wasm) end) / 1000000,
    RepeatStart = median([time_ns(fun() -> {ok, X, _, _} = hb_beamr:start(Wasm), hb_beamr:stop(X) end)
                          || _ <- lists:seq(1, 20)]) / 1000000,
    {ok, I, _, _} = hb_beamr:start(Wasm),
    {ok, Msg, Env} = hb_beamr_aos:write_message(I, <<"1 + 1">>),
    FirstHandle = time_ns(fun() -> {ok, _} = hb_beamr_aos:handle(I, Msg, Env) end) / 1000000,
    HandleOnly = median([begin
                             {ok, M, E} = hb_beamr_aos:write_message(I, <<"1 + 1">>),
                             time_ns(fun() -> {ok, _} = hb_beamr_aos:handle(I, M, E) end)
                         end || _ <- lists:seq(1, ?AOS_RUNS)]) / 1000000,
    FullFlow = full_flow_ms(Wasm),
    LuaLoop = median([time_ns(fun() ->
                                  hb_beamr_aos:eval(I, <<"local s=0 for i=1,1000000 do s=s+i end return s">>)
                              end) || _ <- lists:seq(1, 5)]) / 1000000,
    LuaLoopGas = median([time_ns(fun() ->
                                     hb_beamr_aos:eval(I, <<"local s=0 for i=1,1000000 do s=s+i end return s">>,
                                                       #{gas => 1000000000000})
                                 end) || _ <- lists:seq(1, 5)]) / 1000000,
    DirectEval = maps:get("direct_aos_eval_us", Base) / 1000,
    {SerializeGBs, RestoreGBs} = raw_throughput(I, 50),
    {SnapGBs, StateRestoreGBs} = state_throughput(I, 50),
    hb_beamr:stop(I),
    {ColdChildMs, WarmChildMs} = disk_cache_starts_ms(),
    [{"AOS start/1, first (prepare + compile)", FirstStart, 10.0, "<= 400", "ms"},
     {"AOS start/1, module seen before", RepeatStart, 10.0, "<= 2", "ms"},
     {"AOS start/2 in a fresh VM, empty disk cache (cache_dir)", ColdChildMs, 10.0, "", "ms"},
     {"AOS start/2 in a fresh VM with a warm disk cache", WarmChildMs, 10.0, "<= 10", "ms"},
     {"AOS first handle on a fresh instance", FirstHandle, 1700.0, "<= 25", "ms"},
     {"AOS Eval \"1 + 1\", handle only", HandleOnly, 48.0, "<= 1", "ms"},
     {"AOS Eval \"1 + 1\", write_string+handle+read_string", FullFlow, 48.0, "<= 1", "ms"},
     {"  the same message on the prepared module from Rust", DirectEval, "", "", "ms"},
     {"  hb_beamr's own share of the message", 100 * (FullFlow - DirectEval) / FullFlow, "", "<= 10", "%"},
     {"AOS Lua loop 1..1,000,000", LuaLoop, 680.0, "<= 25", "ms"},
     {"  the same with a gas budget (gas => 10^12)", LuaLoopGas, LuaLoop, "<= 1.5x", "ms"},
     {"serialize (12.6 MB memory)", SerializeGBs, "", ">= 2", "GB/s"},
     {"deserialize (12.6 MB memory)", RestoreGBs, "", ">= 2", "GB/s"},
     {"  resident growth over 200 serialize+deserialize", growth_in_child_mb(aos_raw), "", "~0", "MB"},
     {"snapshot/1, full state (12.6 MB memory)", SnapGBs, "", ">= 4", "GB/s"},
     {"restore/2, full state (12.6 MB memory)", StateRestoreGBs, "", ">= 4", "GB/s"},
     {"  resident growth over 100 snapshot+restore", growth_in_child_mb(aos_state), "", "~0", "MB"}].

%% Only the snapshot rows (quick look while working on them).
-spec state_rows() -> ok.
state_rows() ->
    {ok, Wasm} = file:read_file(filename:join(os:getenv("HB_BEAMR_SHARED"), ?AOS)),
    {ok, I, _, _} = hb_beamr:start(Wasm),
    _ = hb_beamr_aos:eval(I, <<"1 + 1">>),
    {SnapGBs, RestoreGBs} = state_throughput(I, 50),
    hb_beamr:stop(I),
    rows([{"snapshot/1, full state (12.6 MB memory)", SnapGBs, "", ">= 4", "GB/s"},
          {"restore/2, full state (12.6 MB memory)", RestoreGBs, "", ">= 4", "GB/s"},
          {"  resident growth over 100 snapshot+restore", growth_in_child_mb(aos_state), "", "~0", "MB"}]
         ++ gib_rows() ++ incremental_rows()).

%% snapshot/1 and restore/2 of a 1 GiB memory (bench/snapshot_1g.wat).
gib_rows() ->
    {ok, Wat} = file:read_file("bench/snapshot_1g.wat"),
    {ok, I, _, _} = hb_beamr:start(Wat),
    {ok, [16385]} = hb_beamr:call(I, "fill", []),
    {SnapGBs, RestoreGBs} = state_throughput(I, 5),
    hb_beamr:stop(I),
    [{"snapshot/1, full state (1 GiB memory)", SnapGBs, "", ">= 4", "GB/s"},
     {"restore/2, full state (1 GiB memory)", RestoreGBs, "", ">= 4", "GB/s"},
     {"  resident growth over 100 snapshot+restore", growth_in_child_mb(gib_state), "", "~0", "MB"}].

%% Throughput of full snapshots and restores (`Runs' of each; the result binary is
%% dropped right away as a caller would).
state_throughput(I, Runs) ->
    {ok, Snapshot} = hb_beamr:snapshot(I),
    Bytes = byte_size(Snapshot) * Runs,
    Snap = time_ns(fun() -> [begin {ok, _} = hb_beamr:snapshot(I), erlang:garbage_collect() end
                             || _ <- lists:seq(1, Runs)] end),
    Restore = time_ns(fun() -> [ok = hb_beamr:restore(I, Snapshot) || _ <- lists:seq(1, Runs)] end),
    {Bytes / Snap, Bytes / Restore}.

%% Resident growth over the cycles of `What' (see `growth_cycle/1'), measured in a child
%% VM that does nothing else and caches no freed memory segments (`+MMmcs 0'): in this VM,
%% memory that earlier rows free late, and the allocator's cache of freed segments (a
%% 256 MiB or 1 GiB snapshot's carrier, kept or released depending on its ageing), read
%% as growth of hundreds of MB either way.
growth_in_child_mb(What) ->
    Paths = lists:append([["-pa", filename:dirname(code:which(M))] || M <- [hb_beamr, ?MODULE]]),
    Cmd = lists:flatten(["erl +MMmcs 0 -noshell ", lists:join(" ", Paths),
                         " -eval 'hb_beamr_bench:child_growth(", atom_to_list(What), "), halt().'"]),
    list_to_float(string:trim(os:cmd(Cmd))).

%% In a child VM: prints the resident growth over the cycles of `What'.
-spec child_growth(aos_raw | aos_state | gib_state | deltas) -> ok.
child_growth(What) ->
    ok = hb_beamr:load_driver(),
    {Cycle, Cycles} = growth_cycle(What),
    io:format("~f~n", [resident_growth_mb(Cycle, Cycles)]).

%% A cycle that keeps nothing, and how many to measure.
growth_cycle(aos_raw) ->
    I = aos_instance(),
    {fun() -> {ok, Raw} = hb_beamr:serialize(I), ok = hb_beamr:deserialize(I, Raw) end, 200};
growth_cycle(aos_state) ->
    I = aos_instance(),
    {fun() -> {ok, S} = hb_beamr:snapshot(I), ok = hb_beamr:restore(I, S) end, 100};
growth_cycle(gib_state) ->
    {ok, Wat} = file:read_file("bench/snapshot_1g.wat"),
    {ok, I, _, _} = hb_beamr:start(Wat),
    {ok, [16385]} = hb_beamr:call(I, "fill", []),
    {fun() -> {ok, S} = hb_beamr:snapshot(I), ok = hb_beamr:restore(I, S) end, 100};
growth_cycle(deltas) ->
    I = quarter_gib(auto),
    {ok, _} = hb_beamr:snapshot(I, #{incremental => true}),
    {fun() -> ok = one_percent(I, 3), {ok, _} = hb_beamr:snapshot(I, #{incremental => true}) end, 100}.

aos_instance() ->
    {ok, I, _, _} = hb_beamr:start(hb_beamr_test_util:shared_file(?AOS)),
    _ = hb_beamr_aos:eval(I, <<"1 + 1">>),
    I.

%% How much resident memory `Cycles' runs of `Cycle' leave behind, from after 50 warm-up
%% cycles (the first ones' carriers are given back late). Each reading is taken with every
%% process's heap collected, after 2.5 s for the allocators to settle.
resident_growth_mb(Cycle, Cycles) ->
    Run = fun(N) -> [begin Cycle(), erlang:garbage_collect() end || _ <- lists:seq(1, N)] end,
    Run(50),
    Before = settled_resident_mb(),
    Run(Cycles),
    settled_resident_mb() - Before.

settled_resident_mb() ->
    [erlang:garbage_collect(P) || P <- processes()],
    timer:sleep(2500),
    hb_beamr_test_util:resident_mb().

%% Deltas after a message that writes 1% of the 4 KiB pages of a 256 MiB memory,
%% scattered (test/fixtures/incremental.wat), beside full snapshots of that memory; medians
%% of 10 messages, each on other pages.
incremental_rows() ->
    Kernel = hb_beamr_nif:kernel_dirty_tracking(),
    I = quarter_gib(auto),
    FullMs = median([time_ns(fun() -> {ok, _} = hb_beamr:snapshot(I), erlang:garbage_collect() end)
                     || _ <- lists:seq(1, 5)]) / 1000000,
    {ok, Full} = hb_beamr:snapshot(I),
    {ok, _} = hb_beamr:snapshot(I, #{incremental => true}),
    {MessageMs, DeltaMs, DeltaSize} = deltas(I),
    %% After a restore the first delta compares digests, then engages the kernel.
    AfterRestoreMs = median([begin
                                 ok = hb_beamr:restore(I, Full),
                                 ok = one_percent(I, K),
                                 time_ns(fun() -> {ok, _} = hb_beamr:snapshot(I, #{incremental => true}) end)
                             end || K <- lists:seq(1, 5)]) / 1000000,
    ok = hb_beamr:restore(I, Full),
    ok = one_percent(I, 2),
    {ok, Delta} = hb_beamr:snapshot(I, #{incremental => true}),
    {ok, J, _, _} = hb_beamr:start(hb_beamr_test_util:fixture("incremental.wat")),
    ChainMs = median([time_ns(fun() -> ok = hb_beamr:restore(J, [Full, Delta]) end) || _ <- lists:seq(1, 5)]) / 1000000,
    FullRestoreMs = median([time_ns(fun() -> ok = hb_beamr:restore(J, Full) end) || _ <- lists:seq(1, 5)]) / 1000000,
    [hb_beamr:stop(X) || X <- [I, J]],
    D = quarter_gib(digests),
    {ok, _} = hb_beamr:snapshot(D, #{incremental => true}),
    {UntrackedMessageMs, DigestsMs, _} = deltas(D),
    hb_beamr:stop(D),
    Way = case Kernel of true -> "kernel tracking"; false -> "digests: no kernel tracking" end,
    [{"256 MiB memory: full snapshot/1", FullMs, "", "", "ms"},
     {"  1% of its 4 KiB pages written: delta/full size", 100 * DeltaSize / byte_size(Full), "", "<= 3", "%"},
     {"  the delta's time (" ++ Way ++ ")", DeltaMs, FullMs, "", "ms"},
     {"    delta/full time", 100 * DeltaMs / FullMs, "", "<= 25", "%"},
     {"  the delta's time with dirty_tracking => digests", DigestsMs, FullMs, "", "ms"},
     {"  first delta after a restore (digests, then kernel)", AfterRestoreMs, FullMs, "", "ms"},
     {"  the 1% message itself: tracked / untracked", MessageMs, UntrackedMessageMs, "", "ms"},
     {"  restore/2 of [Full, Delta] / of Full", ChainMs, FullRestoreMs, "", "ms"},
     {"  resident growth over 100 message+delta cycles", growth_in_child_mb(deltas), "", "~0", "MB"}].

quarter_gib(Tracking) ->
    {ok, I, _, _} = hb_beamr:start(hb_beamr_test_util:fixture("incremental.wat"), #{dirty_tracking => Tracking}),
    {ok, [2]} = hb_beamr:call(I, "grow", [4094]),
    {ok, []} = hb_beamr:call(I, "scatter", [0, 1, 65536, 1]),
    I.

%% Writes a byte in 1% of the 4 KiB pages, every 100th from page `K'.
one_percent(I, K) ->
    {ok, []} = hb_beamr:call(I, "scatter", [K, 100, 655, K]),
    ok.

%% Medians over 10 messages of the message's time, the delta's time and its size.
deltas(I) ->
    Samples = [begin
                   Message = time_ns(fun() -> ok = one_percent(I, K) end),
                   Started = erlang:monotonic_time(nanosecond),
                   {ok, Delta} = hb_beamr:snapshot(I, #{incremental => true}),
                   {Message, erlang:monotonic_time(nanosecond) - Started, byte_size(Delta)}
               end || K <- lists:seq(10, 19)],
    {median([M || {M, _, _} <- Samples]) / 1000000, median([T || {_, T, _} <- Samples]) / 1000000,
     median([S || {_, _, S} <- Samples])}.

%% Starts aos-2-pure-xs in child VMs sharing a fresh cache_dir: the first child compiles and
%% fills the cache, the next ones load from it (median of 5). Each child times its own first
%% start/2 (the NIF is loaded beforehand, so VM boot is not counted).
disk_cache_starts_ms() ->
    Dir = filename:join("/tmp", "hb_beamr_bench_cache_" ++ os:getpid()),
    _ = file:del_dir_r(Dir),
    Wasm = filename:join(os:getenv("HB_BEAMR_SHARED"), ?AOS),
    Paths = lists:append([["-pa", filename:dirname(code:which(M))] || M <- [hb_beamr, ?MODULE]]),
    Child = fun() ->
        Cmd = lists:flatten(["erl -noshell ", lists:join(" ", Paths),
                             " -eval 'hb_beamr_bench:child_start(\"", Wasm, "\", \"", Dir, "\"), halt().'"]),
        list_to_float(string:trim(os:cmd(Cmd)))
    end,
    Cold = Child(),
    Warm = median([Child() || _ <- lists:seq(1, 5)]),
    _ = file:del_dir_r(Dir),
    {Cold, Warm}.

%% In a child VM: prints the milliseconds of one start/2 with `cache_dir => Dir'.
-spec child_start(string(), string()) -> ok.
child_start(WasmPath, Dir) ->
    ok = hb_beamr:load_driver(),
    {ok, Wasm} = file:read_file(WasmPath),
    Ms = time_ns(fun() -> {ok, _, _, _} = hb_beamr:start(Wasm, #{cache_dir => Dir}) end) / 1000000,
    io:format("~f~n", [Ms]).

%% Throughput of serialize/deserialize.
raw_throughput(I, Runs) ->
    {ok, Snapshot} = hb_beamr:serialize(I),
    Bytes = byte_size(Snapshot) * Runs,
    Serialize = time_ns(fun() -> [{ok, _} = hb_beamr:serialize(I) || _ <- lists:seq(1, Runs)] end),
    Restore = time_ns(fun() -> [ok = hb_beamr:deserialize(I, Snapshot) || _ <- lists:seq(1, Runs)] end),
    {Bytes / Serialize, Bytes / Restore}.

%% The same calls made directly through wasmer from Rust, and preparation timings
%% (cargo example `baselines`).
baselines() ->
    Exe = filename:join(os:getenv("CARGO_TARGET_DIR"), "release/examples/baselines"),
    Aos = filename:join(os:getenv("HB_BEAMR_SHARED"), ?AOS),
    Out = os:cmd(Exe ++ " bench/bench.wat " ++ Aos),
    maps:from_list([{Name, list_to_integer(Value)}
                    || [Name, Value] <- [string:lexemes(L, " ") || L <- string:lexemes(Out, "\n")]]).

rows(Rows) ->
    io:format("~-52s ~12s ~14s ~10s~n", ["benchmark", "hb_beamr", "baseline", "target"]),
    [io:format("~-52s ~12s ~14s ~10s~n", [Name, fmt(V, Unit), fmt(B, Unit), T]) || {Name, V, B, T, Unit} <- Rows],
    io:format("Baselines: the same wasm called from Rust through wasmer (first rows); "
              "HyperBEAM's WAMR hb_beamr on this machine (AOS rows).~n"),
    ok.

fmt(X, Unit) when is_number(X) -> float_to_list(float(X), [{decimals, 3}]) ++ " " ++ Unit;
fmt(X, _) -> X.

%% The whole message on a fresh instance after one warm-up message, as the Rust baseline
%% runs it (Lua's heap grows with every message, so an older instance is slower).
full_flow_ms(Wasm) ->
    {ok, I, _, _} = hb_beamr:start(Wasm),
    <<_/binary>> = hb_beamr_aos:eval(I, <<"1 + 1">>),
    Ms = median([time_ns(fun() -> <<_/binary>> = hb_beamr_aos:eval(I, <<"1 + 1">>) end)
                 || _ <- lists:seq(1, ?AOS_RUNS)]) / 1000000,
    hb_beamr:stop(I),
    Ms.
