%%% @doc `make bench-hibernate': many AO processes in one VM with a live budget.
%%%
%%% Starts `HIBERNATE_INSTANCES' (default 100,000) aos-2-pure-xs processes from one booted
%%% snapshot with `max_live' 1,000 (`HIBERNATE_MAX_LIVE'), sends each an Eval of its own
%%% (so every state differs), then 10,000 Evals (`HIBERNATE_EVALS') to random processes,
%%% each checking that the process still holds its own value. `HIBERNATE_DIR' puts the
%%% images in that directory instead of memory. Prints RSS (peak and end), image bytes per
%%% hibernated process, Eval latency to live and to hibernated processes (p50/p99), and
%%% hibernations and revivals per second. The baseline for a live process's Eval is
%%% measured after, in the same run: `max_live' processes all live without a budget, sent
%%% Evals in the same random way (with many processes live, an Eval mostly waits for
%%% memory that is no longer in the CPU's caches). First, without a budget, one process alone is
%%% hibernated and woken `HIBERNATE_CYCLES' times (default 200), its image in memory and
%%% then in a directory: `hibernate/1', a revival (a memory-size request) and a revival
%%% with an Eval, p50/p99. Not a test: nothing here asserts; wrong answers
%%% are counted and printed.
-module(hb_beamr_bench_hibernate).
-export([main/0]).

-define(AOS, "fixtures/hyperbeam/aos-2-pure-xs.wasm").

%% @doc Runs the bench; `error' (and says why) without the AOS module under ../shared.
-spec main() -> ok | error.
main() ->
    case hb_beamr_test_util:shared_file(?AOS) of
        undefined ->
            io:format("make bench-hibernate needs ~s under ../shared (or SHARED=DIR): nothing measured~n",
                      [?AOS]),
            error;
        Wasm ->
            run(Wasm, env_int("HIBERNATE_INSTANCES", 100000), env_int("HIBERNATE_MAX_LIVE", 1000),
                env_int("HIBERNATE_EVALS", 10000))
    end.

env_int(Name, Default) ->
    list_to_integer(os:getenv(Name, integer_to_list(Default))).

run(Wasm, N, MaxLive, Evals) ->
    Opts = case os:getenv("HIBERNATE_DIR") of
               false -> #{};
               Dir -> ok = filelib:ensure_path(Dir), #{hibernate_dir => Dir}
           end,
    {ok, Boot, _, _} = hb_beamr:start(Wasm),
    <<_/binary>> = hb_beamr_aos:eval(Boot, <<"Booted = true">>),
    {ok, Snapshot} = hb_beamr:snapshot(Boot),
    ok = hb_beamr:stop(Boot),
    alone(Wasm, Snapshot, env_int("HIBERNATE_CYCLES", 200)),
    application:set_env(hb_beamr, max_live, MaxLive),
    RssBase = hb_beamr_test_util:resident_mb(),
    Sampler = spawn_link(fun() -> sample_rss(RssBase) end),
    io:format("~b processes from one booted snapshot (~.1f MiB), max_live ~b, images in ~s~n",
              [N, byte_size(Snapshot) / 1048576, MaxLive,
               maps:get(hibernate_dir, Opts, "memory")]),
    {StartUs, Processes} = timer:tc(fun() -> start_all(Wasm, Snapshot, Opts, N) end),
    Started = tuple_size(Processes),
    io:format("started and messaged ~b in ~.1f s (~.1f /s)~n",
              [Started, StartUs / 1.0e6, Started / (StartUs / 1.0e6)]),
    settle_budget(MaxLive, 100),
    AfterStart = hb_beamr:stats(),
    rand:seed(exsss, {1, 2, 3}),
    {EvalUs, {Live, Hibernated, Wrong}} =
        timer:tc(fun() -> random_evals(Processes, Evals, [], [], 0) end),
    AfterEvals = hb_beamr:stats(),
    Sampler ! {peak, self()},
    Peak = receive {peak, P} -> P end,
    RssEnd = hb_beamr_test_util:resident_mb(),
    [hb_beamr:stop(I) || I <- tuple_to_list(Processes)],
    application:unset_env(hb_beamr, max_live),
    %% After the RSS readings, whose baseline it would move.
    Baseline = all_live(Wasm, Snapshot, Opts, min(N, MaxLive), Evals),
    #{hibernated := HibernatedNow, image_bytes_memory := InMemory, image_bytes_disk := OnDisk} = AfterStart,
    Seconds = EvalUs / 1.0e6,
    Delta = fun(Key) -> (maps:get(Key, AfterEvals) - maps:get(Key, AfterStart)) / Seconds end,
    hb_beamr_bench_rows:print([{"processes started / asked", io_lib:format("~b / ~b", [Started, N]), "all", ""},
          {"wrong or failed answers in the random Evals", Wrong, "0", ""},
          {"RSS peak (above the VM before)", Peak - RssBase, "<= 4096", "MiB"},
          {"RSS at the end (above the VM before)", RssEnd - RssBase, "", "MiB"},
          {"hibernated processes after the starts", HibernatedNow, "", ""},
          {"image bytes per hibernated process, memory", InMemory / max(HibernatedNow, 1) / 1024, "<= 256",
           "KiB"},
          {"image bytes per hibernated process, disk", OnDisk / max(HibernatedNow, 1) / 1024, "<= 256",
           "KiB"},
          {"Eval to a live process, p50 / p99", pair(Live), "~0.35", "ms"},
          {"  without a budget, as many processes all live", pair(Baseline), "", "ms"},
          {"Eval to a hibernated process, p50 / p99", pair(Hibernated), "<= 3 / 25", "ms"},
          {"  (Evals to live / hibernated processes)", io_lib:format("~b / ~b",
              [length(Live), length(Hibernated)]), "", ""},
          {"hibernations per second (random Evals)", Delta(hibernations), "", "/s"},
          {"revivals per second (random Evals)", Delta(revivals), "", "/s"}]),
    ok.

%% The baseline for an Eval to a live process: as many processes as the budget keeps live,
%% without a budget (none hibernates), sent Evals in the same random way; the latencies.
all_live(Wasm, Snapshot, Opts, N, Evals) ->
    Processes = start_all(Wasm, Snapshot, Opts, N),
    rand:seed(exsss, {3, 2, 1}),
    {Live, [], 0} = random_evals(Processes, min(Evals, 5 * N), [], [], 0),
    [hb_beamr:stop(I) || I <- tuple_to_list(Processes)],
    Live.

%% One process, restored from the snapshot (as the second one is, so that the snapshot is
%% a shared base), hibernated and woken Cycles times in a row; its image in memory, then
%% in a directory of its own.
alone(Wasm, Snapshot, Cycles) ->
    Dir = filename:join(filename:basedir(user_cache, "hb_beamr"), "bench_hibernate_alone"),
    ok = filelib:ensure_path(Dir),
    {ok, First, _, _} = hb_beamr:start(Wasm, #{restore => Snapshot}),
    io:format("one process alone, ~b cycles (p50 / p99)~n", [Cycles]),
    Rows = [begin
                {ok, I, _, _} = hb_beamr:start(Wasm, Opts#{restore => Snapshot}),
                <<_/binary>> = hb_beamr_aos:eval(I, <<"Mine = 1">>),
                Samples = [cycle(I) || _ <- lists:seq(1, Cycles)],
                ok = hb_beamr:stop(I),
                {H, R, E} = lists:unzip3(Samples),
                {Where, Target} = case Opts of
                                      #{hibernate_dir := _} -> {"a directory", "<= 5 p50"};
                                      #{} -> {"memory", "<= 2 p50"}
                                  end,
                [{"  hibernate/1, image in " ++ Where, pair(H), "", "ms"},
                 {"  revival, image in " ++ Where, pair(R), Target, "ms"},
                 {"  revival and Eval, image in " ++ Where, pair(E), "", "ms"}]
            end || Opts <- [#{}, #{hibernate_dir => Dir}]],
    ok = hb_beamr:stop(First),
    _ = file:del_dir_r(Dir),
    hb_beamr_bench_rows:print(lists:append(Rows)).

%% One hibernation and revival, then another hibernation and a revival by an Eval.
cycle(I) ->
    {H, ok} = timer:tc(fun() -> hb_beamr:hibernate(I) end),
    {R, {ok, _}} = timer:tc(fun() -> hb_beamr_io:size(I) end),
    ok = hb_beamr:hibernate(I),
    {E, {ok, <<"1">>}} = timer:tc(fun() -> hb_beamr_aos:output(hb_beamr_aos:eval(I, <<"return Mine">>)) end),
    {H, R, E}.

%% Starts N processes restored from the snapshot, each sent `Mine = K'.
start_all(Wasm, Snapshot, Opts, N) ->
    list_to_tuple(lists:reverse(start_all(Wasm, Snapshot, Opts, 1, N, []))).

start_all(_Wasm, _Snapshot, _Opts, K, N, Acc) when K > N ->
    Acc;
start_all(Wasm, Snapshot, Opts, K, N, Acc) ->
    case hb_beamr:start(Wasm, Opts#{restore => Snapshot}) of
        {ok, I, _, _} ->
            <<_/binary>> = hb_beamr_aos:eval(I, iolist_to_binary(["Mine = ", integer_to_list(K)])),
            start_all(Wasm, Snapshot, Opts, K + 1, N, [I | Acc]);
        {error, Reason} ->
            io:format("start ~b failed: ~p~n", [K, Reason]),
            Acc
    end.

%% Waits (up to Tries * 100 ms) until at most MaxLive processes are live.
settle_budget(MaxLive, Tries) ->
    case maps:get(live, hb_beamr:stats()) =< MaxLive + 1 orelse Tries =:= 0 of
        true -> ok;
        false -> timer:sleep(100), settle_budget(MaxLive, Tries - 1)
    end.

random_evals(_Processes, 0, Live, Hibernated, Wrong) ->
    {Live, Hibernated, Wrong};
random_evals(Processes, Left, Live, Hibernated, Wrong) ->
    K = rand:uniform(tuple_size(Processes)),
    I = element(K, Processes),
    WasHibernated = hibernated(I),
    Expected = integer_to_binary(K),
    {Us, Answer} = timer:tc(fun() -> catch hb_beamr_aos:output(hb_beamr_aos:eval(I, <<"return Mine">>)) end),
    Wrong1 = case Answer of
                 {ok, Expected} -> Wrong;
                 _ when Wrong =:= 0 -> io:format("first wrong answer, process ~b: ~P~n", [K, Answer, 20]), 1;
                 _ -> Wrong + 1
             end,
    case WasHibernated of
        true -> random_evals(Processes, Left - 1, Live, [Us | Hibernated], Wrong1);
        false -> random_evals(Processes, Left - 1, [Us | Live], Hibernated, Wrong1)
    end.

hibernated(I) ->
    {ok, #{state := State}} = hb_beamr:info(I),
    State =:= hibernated.

pair([]) ->
    "-";
pair(Samples) ->
    Sorted = lists:sort(Samples),
    At = fun(Q) -> lists:nth(max(1, round(Q * length(Sorted))), Sorted) / 1000 end,
    io_lib:format("~.3f / ~.3f", [At(0.5), At(0.99)]).

%% The highest RSS seen, sampled every 200 ms.
sample_rss(Peak) ->
    receive
        {peak, From} -> From ! {peak, Peak}
    after 200 ->
        sample_rss(max(Peak, hb_beamr_test_util:resident_mb()))
    end.
