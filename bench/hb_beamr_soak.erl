%%% @doc `make soak': a long run that must not grow. 1,000,000 calls whose import is
%%% answered by an Erlang fun, then 100,000 start/stop cycles; resident memory (VmRSS),
%%% VM processes and executor threads are printed after a warm-up and at the end. Exits
%%% non-zero if memory grew beyond noise (10 % + 20 MB over the warm-up figure) or a
%%% process or thread was left behind. Not part of `make test'.
-module(hb_beamr_soak).
-export([main/0]).

-define(CALLS, 1000000).
-define(CYCLES, 100000).
%% Share of each phase run before the warm-up figures are taken.
-define(WARM_UP_SHARE, 10).
-define(ALLOWED_GROWTH_KB, 20 * 1024).

-type figures() :: #{rss_kb := non_neg_integer(), processes := non_neg_integer(),
                     threads := non_neg_integer()}.

%% @doc Runs the soak; returns the exit status (0 when nothing grew).
-spec main() -> 0 | 1.
main() ->
    {ok, Wasm} = file:read_file("bench/bench.wat"),
    {ok, I, _, _} = hb_beamr:start(Wasm),
    calls(I, ?CALLS div ?WARM_UP_SHARE),
    cycles(Wasm, ?CYCLES div ?WARM_UP_SHARE),
    Warm = figures(),
    print("after warm-up", Warm),
    {CallsMs, ok} = timed(fun() -> calls(I, ?CALLS) end),
    io:format("~b calls with an import: ~b ms~n", [?CALLS, CallsMs]),
    print("after the calls", figures()),
    {CyclesMs, ok} = timed(fun() -> cycles(Wasm, ?CYCLES) end),
    io:format("~b start/stop cycles: ~b ms~n", [?CYCLES, CyclesMs]),
    ok = hb_beamr:stop(I),
    End = figures(),
    print("at the end", End),
    verdict(Warm, End).

%% Each call makes one import round trip (echo_loop(1) calls env.echo once).
calls(I, N) ->
    Echo = fun(Count, #{args := [X]}, _Opts) -> {ok, [X], Count + 1} end,
    calls(I, Echo, N, 0).

calls(_I, _Echo, N, N) ->
    ok;
calls(I, Echo, N, Count) ->
    {ok, [1], Next} = hb_beamr:call(I, "echo_loop", [1], Echo, Count),
    calls(I, Echo, N, Next).

cycles(_Wasm, 0) ->
    ok;
cycles(Wasm, N) ->
    {ok, J, _, _} = hb_beamr:start(Wasm),
    {ok, [3]} = hb_beamr:call(J, "add", [1, 2]),
    ok = hb_beamr:stop(J),
    cycles(Wasm, N - 1).

timed(Fun) ->
    {Micros, Result} = timer:tc(Fun),
    {Micros div 1000, Result}.

%% Figures once stopped instances have finished exiting and garbage is collected.
-spec figures() -> figures().
figures() ->
    timer:sleep(500),
    [erlang:garbage_collect(P) || P <- erlang:processes()],
    #{rss_kb => rss_kb(), processes => erlang:system_info(process_count),
      threads => executor_threads()}.

rss_kb() ->
    {ok, Status} = file:read_file("/proc/self/status"),
    [_, Rest] = binary:split(Status, <<"VmRSS:">>),
    [Kb | _] = string:lexemes(Rest, " \t\n"),
    binary_to_integer(Kb).

executor_threads() ->
    Tasks = "/proc/self/task",
    {ok, Ids} = file:list_dir(Tasks),
    length([Id || Id <- Ids,
                  file:read_file(filename:join([Tasks, Id, "comm"])) =:= {ok, <<"hb_beamr_exec\n">>}]).

print(When, #{rss_kb := Rss, processes := Processes, threads := Threads}) ->
    io:format("~-16s RSS ~.1f MB, ~b processes, ~b executor threads~n",
              [When, Rss / 1024, Processes, Threads]).

%% One instance (the calls' one) fewer at the end than after the warm-up.
verdict(#{rss_kb := Warm, processes := Processes, threads := Threads},
        #{rss_kb := End, processes := EndProcesses, threads := EndThreads}) ->
    Limit = Warm + Warm div 10 + ?ALLOWED_GROWTH_KB,
    Problems = [io_lib:format("RSS ~b kB > limit ~b kB", [End, Limit]) || End > Limit]
        ++ [io_lib:format("~b processes > ~b", [EndProcesses, Processes - 1]) || EndProcesses > Processes - 1]
        ++ [io_lib:format("~b executor threads > ~b", [EndThreads, Threads - 1]) || EndThreads > Threads - 1],
    case Problems of
        [] ->
            io:format("soak passed: RSS grew ~.1f MB over the warm-up figure (limit ~.1f MB)~n",
                      [(End - Warm) / 1024, (Limit - Warm) / 1024]),
            0;
        _ ->
            io:format("soak FAILED: ~s~n", [lists:join("; ", Problems)]),
            1
    end.
