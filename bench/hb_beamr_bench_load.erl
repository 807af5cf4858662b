%%% @doc `make bench-load': call and import latency while the machine is busy. Each row
%%% runs in a fresh child VM (so `+S 1' can be a row) beside its load: busy Erlang
%%% processes in that VM, or `yes > /dev/null' on every core, started and stopped here.
%%% Prints p50 / p99 / max of single `call/3' NIF round trips and of import round trips
%%% (wasm -> Erlang -> wasm), and the longest time any NIF held a scheduler: by the wall
%%% clock, and on the CPU (the time the NIF itself kept the core, without the time the OS
%%% gave the core to other threads), beside a control NIF that only spins as long. Not a
%%% test: nothing here asserts.
-module(hb_beamr_bench_load).
-export([main/0, row/1]).

-define(SAMPLES, 20000).
%% Rows whose NIF durations are counted over 100,000 calls, as issue 6 asks.
-define(NIF_CALLS, 100000).
%% Room for every sample without a garbage collection (words; 160 MiB).
-define(HEAP_WORDS, 20000000).

-spec main() -> ok.
main() ->
    Cores = erlang:system_info(logical_processors_available),
    Rows = [{"idle", "", 0, false},
            {"1 busy Erlang process", "", 1, false},
            {"2 busy Erlang processes", "", 2, false},
            {"4 busy Erlang processes", "", 4, false},
            {"+S 1, idle", "+S 1", 0, false},
            {"+S 1, 1 busy Erlang process", "+S 1", 1, false},
            {io_lib:format("yes > /dev/null on all ~p cores", [Cores]), "", 0, true},
            {"yes on every core + 2 busy Erlang processes", "", 2, true}],
    io:format("~-44s ~23s ~23s ~16s ~16s ~16s ~18s ~16s ~18s~n",
              ["load (2 cores)", "call p50/p99/max us", "import p50/p99/max us", "NIF max (>100us)",
               "OS gap (>100us)", "NIF CPU (>100us)", "long/preempt/block", "control CPU", "control l/p/b"]),
    [print_row(Name, child_row(Flags, Busy, Hog, Cores)) || {Name, Flags, Busy, Hog} <- Rows],
    io:format("Targets in every row: call p50 <= 5 us, import p50 <= 10 us, p99 <= 100 us, "
              "no NIF longer than 100 us.~n"
              "NIF max: the longest wall time of any call/import_reply NIF over ~b calls and ~b imports, "
              "and how many took over 100 us.~n"
              "OS gap: the same for ~b iterations of a loop of trivial BIFs in the same process under the "
              "same load: how long the OS takes a scheduler thread away from any code.~n"
              "NIF CPU: the longest time one NIF kept its core (thread CPU time), over a second pass of as "
              "many calls and imports with hb_beamr_nif:nif_cpu_time/1 on, and how many kept it over 100 us.~n"
              "long/preempt/block: in that second pass, the NIFs over 100 us by the wall clock, how many of them "
              "the OS preempted (an involuntary context switch) and how many blocked (a voluntary one).~n"
              "control: the same two columns for a NIF that only spins (hb_beamr_nif:nif_cpu_time_control/1), "
              "once for each NIF of the first pass and as long as it took (at most 20 us), in a third pass "
              "under the same load.~n",
              [?NIF_CALLS, ?SAMPLES, ?NIF_CALLS + ?SAMPLES]).

print_row(Name, {Call, Import, Nif, Gap, {NifCpu, NifCauses}, {ControlCpu, ControlCauses}}) ->
    io:format("~-44s ~23s ~23s ~16s ~16s ~16s ~18s ~16s ~18s~n",
              [Name, triple(Call), triple(Import), over(Nif), over(Gap), over(NifCpu), causes(NifCauses),
               over(ControlCpu), causes(ControlCauses)]);
print_row(Name, Error) ->
    io:format("~-44s failed: ~p~n", [Name, Error]).

causes({LongByWall, Preempted, Blocked}) ->
    io_lib:format("~b / ~b / ~b", [LongByWall, Preempted, Blocked]).

over({Max, Over}) -> lists:flatten([num(Max), " (", integer_to_list(Over), ")"]).

triple({P50, P99, Max}) -> lists:flatten([num(P50), " / ", num(P99), " / ", num(Max)]).

num(X) when X < 10 -> float_to_list(float(X), [{decimals, 2}]);
num(X) when X < 1000 -> float_to_list(float(X), [{decimals, 1}]);
num(X) -> integer_to_list(round(X)).

child_row(Flags, Busy, Hog, Cores) ->
    Hogs = case Hog of
               true -> [start_hog() || _ <- lists:seq(1, Cores)];
               false -> []
           end,
    Paths = lists:append([[" -pa ", filename:dirname(code:which(M))] || M <- [hb_beamr, ?MODULE]]),
    Cmd = lists:flatten(["erl -noshell ", Flags, Paths,
                         " -eval 'hb_beamr_bench_load:row(", integer_to_list(Busy), "), halt().'"]),
    Out = os:cmd(Cmd),
    [stop_hog(P) || P <- Hogs],
    try
        {ok, Tokens, _} = erl_scan:string(Out),
        {ok, Term} = erl_parse:parse_term(Tokens),
        Term
    catch _:_ -> {bad_output, Out}
    end.

%% `yes > /dev/null' in the background; its OS pid.
start_hog() ->
    string:trim(os:cmd("sh -c 'yes > /dev/null 2>&1 & echo $!'")).

stop_hog(Pid) ->
    os:cmd("kill " ++ Pid).

%% @private In the child VM: measures one row with `Busy' spinning processes and prints
%% it as an Erlang term.
-spec row(non_neg_integer()) -> ok.
row(Busy) ->
    %% Measured in a process whose heap holds every sample from the start: a garbage
    %% collection runs right after a NIF returns when the heap is full, and was counted as
    %% milliseconds of NIF time.
    {Pid, Ref} = spawn_opt(fun() -> exit({row, measure(Busy)}) end, [monitor, {min_heap_size, ?HEAP_WORDS}, {min_bin_vheap_size, ?HEAP_WORDS}]),
    receive {'DOWN', Ref, process, Pid, {row, Row}} -> io:format("~p.~n", [Row]) end.

measure(Busy) ->
    ok = hb_beamr:load_driver(),
    {ok, Wat} = file:read_file("bench/bench.wat"),
    {ok, I, _, _} = hb_beamr:start(Wat),
    _ = [hb_beamr_nif:call(I, "add", [1, 2]) || _ <- lists:seq(1, 1000)],
    flush(),
    Spinners = [spawn(fun Spin() -> Spin() end) || _ <- lists:seq(1, Busy)],
    {Calls, CallNifs} = call_samples(I, ?NIF_CALLS, [], []),
    {Imports, ImportNifs} = import_samples(I),
    Nifs = CallNifs ++ ImportNifs,
    Gaps = gaps(?NIF_CALLS + ?SAMPLES, []),
    %% A second pass, timed on the CPU by the NIFs themselves (two system calls each, so
    %% not during the latency samples).
    #{timed := 0} = hb_beamr_nif:nif_cpu_time(true),
    _ = call_samples(I, ?NIF_CALLS, [], []),
    _ = import_samples(I),
    Timed = hb_beamr_nif:nif_cpu_time(false),
    %% The control, under the same load: one NIF per call and import NIF of the first
    %% pass that only spins for as long as that NIF took (at most 20 us), counted the same
    %% way, so that both sides spend about as long inside NIFs.
    #{timed := 0} = hb_beamr_nif:nif_cpu_time(true),
    _ = [hb_beamr_nif:nif_cpu_time_control(Ns) || Ns <- Nifs],
    Control = hb_beamr_nif:nif_cpu_time(false),
    [exit(S, kill) || S <- Spinners],
    {stats(lists:sublist(Calls, ?SAMPLES)), stats(Imports), over_100(Nifs), over_100(Gaps),
     cpu_and_causes(Timed), cpu_and_causes(Control)}.

cpu_and_causes(#{max_cpu_ns := MaxCpuNs, over_100us_cpu := OverCpu, over_100us_wall := LongByWall,
                 preempted := Preempted, blocked := Blocked}) ->
    {{MaxCpuNs / 1000, OverCpu}, {LongByWall, Preempted, Blocked}}.

stats(Samples) ->
    Sorted = lists:sort(Samples),
    N = length(Sorted),
    {lists:nth(N div 2 + 1, Sorted) / 1000, lists:nth(N * 99 div 100, Sorted) / 1000, lists:last(Sorted) / 1000}.

over_100(Durations) ->
    {lists:max(Durations) / 1000, length([D || D <- Durations, D > 100000])}.

%% Durations of a trivial BIF call: all but a few are tens of nanoseconds; the rest is the
%% OS running another thread on the core.
gaps(0, Gaps) ->
    Gaps;
gaps(N, Gaps) ->
    T0 = erlang:monotonic_time(nanosecond),
    _ = erlang:phash2(N),
    T1 = erlang:monotonic_time(nanosecond),
    gaps(N - 1, [T1 - T0 | Gaps]).

%% Round trips of the trivial export (the NIF, then the message when the NIF stopped
%% waiting), and each NIF's own duration.
call_samples(_I, 0, Trips, Nifs) ->
    {Trips, Nifs};
call_samples(I, N, Trips, Nifs) ->
    T0 = erlang:monotonic_time(nanosecond),
    Reply = hb_beamr_nif:call(I, "add", [1, 2]),
    T1 = erlang:monotonic_time(nanosecond),
    {ok, [3]} = event(Reply),
    T2 = erlang:monotonic_time(nanosecond),
    call_samples(I, N - 1, [T2 - T0 | Trips], [T1 - T0 | Nifs]).

%% One call of echo_loop: each import round trip is timed from the reply NIF to the next
%% import request in hand.
import_samples(I) ->
    T0 = erlang:monotonic_time(nanosecond),
    Reply = hb_beamr_nif:call(I, "echo_loop", [?SAMPLES]),
    T1 = erlang:monotonic_time(nanosecond),
    serve(event(Reply), [], [T1 - T0]).

serve({import, Call, Index, _Module, _Name, _Sig, [X]}, Trips, Nifs) ->
    T0 = erlang:monotonic_time(nanosecond),
    Reply = hb_beamr_nif:import_reply(Call, Index, [X]),
    T1 = erlang:monotonic_time(nanosecond),
    Next = event(Reply),
    T2 = erlang:monotonic_time(nanosecond),
    serve(Next, [T2 - T0 | Trips], [T1 - T0 | Nifs]);
serve({ok, [?SAMPLES]}, Trips, Nifs) ->
    %% The last trip ends with the result, not an import.
    {tl(Trips), Nifs}.

event({event, _Id, Event}) -> Event;
event({wait, Id}) -> receive {hb_beamr, Id, Event} -> Event end.

flush() ->
    receive {hb_beamr, _, _} -> flush() after 0 -> ok end.
