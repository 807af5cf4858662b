%%% @doc The API chaos run (`make chaos'; a short fixed-seed run is in
%%% `hb_beamr_short_chaos_tests'). `?WORKERS' processes pick random operations on a shared pool of
%%% instances of the project's fixtures (imports, endless loops, memory, tables, throws,
%%% Emscripten's runtime and `{import_exception, Reason}' answers):
%%% start, call, call_async (answering, failing or ignoring its imports), reply to stale
%%% references, stop, snapshot/restore, serialize/deserialize, hb_beamr_io read/write,
%%% hibernate (also from inside import funs, and idle instances by themselves),
%%% `exit(Pid, kill)' of instances and of each other (a killed worker is replaced). Then:
%%%
%%% - `late': a call not answered within its `timeout' plus `?MARGIN' (an operation
%%%   without a timeout: within `?OP_BOUND');
%%% - `import_after_result': a `{hb_beamr_import, Ref, _}' after `{hb_beamr_result, Ref, _}';
%%% - `raised': an API function raised instead of returning;
%%% - `panic': a call's answer names a Rust panic (`{trap, other, "...panicked..."}', an
%%%   `unwrap' of an OS error, `nif_panicked');
%%% - `hung': a worker still inside an operation `?OP_BOUND' after the end;
%%% - `leftover': executor threads, OS threads or processes above the baseline (taken
%%%   after a warm-up) once every instance is stopped; the run has two rounds, and RSS after
%%%   the second may not exceed RSS after the first by more than `?RSS_BOUND'.
-module(hb_beamr_chaos).

-export([main/0, run/1, report/2]).

-define(WORKERS, 50).
-define(POOL, 24).
-define(MARGIN, 2000).
-define(OP_BOUND, 10000).
-define(RSS_BOUND, 128 bsl 20).
-define(FIXTURES, ["core.wat", "limits.wat", "snapshot.wat", "emscripten_throw.wat", "emscripten/exceptions.js-eh.wasm"]).

-type options() :: #{seed => integer(), millis => pos_integer(), workers => pos_integer()}.
-type result() :: #{ops := #{atom() => non_neg_integer()}, failures := [term()], millis := non_neg_integer(),
                    rss := {Baseline :: pos_integer(), AfterRound1 :: pos_integer(), AfterRound2 :: pos_integer()}}.
-export_type([result/0]).

%% @doc `make chaos': `CHAOS_MINUTES' (default 5) of chaos from seed `CHAOS_SEED'
%% (default 1); prints what ran; 0 when nothing failed.
-spec main() -> 0 | 1.
main() ->
    Minutes = list_to_integer(hb_beamr_test_util:env("CHAOS_MINUTES", "5")),
    Seed = list_to_integer(hb_beamr_test_util:env("CHAOS_SEED", "1")),
    Result = run(#{seed => Seed, millis => Minutes * 60000}),
    report(Seed, Result),
    case maps:get(failures, Result) of
        [] -> 0;
        _ -> 1
    end.

%% @doc Prints operations, minutes, RSS and failures (each kind, and operation, once).
-spec report(integer(), result()) -> ok.
report(Seed, #{ops := Ops, failures := Failures, millis := Millis, rss := {Rss0, Rss1, Rss2}}) ->
    Kinds = lists:foldl(fun(F, Acc) -> maps:update_with(element(1, F), fun(N) -> N + 1 end, 1, Acc) end,
                        #{}, Failures),
    io:format("chaos (seed ~b): ~b operations in ~.1f minutes ~w~n"
              "  RSS ~b MiB at the start, ~b after round 1, ~b after round 2~n  ~b failures ~w~n",
              [Seed, lists:sum(maps:values(Ops)), Millis / 60000, Ops,
               Rss0 bsr 20, Rss1 bsr 20, Rss2 bsr 20, length(Failures), Kinds]),
    [io:format("  FAIL ~ts~n", [re:replace(io_lib:format("~tP", [F, 20]), "\\s*\n\\s*", " ", [global, unicode])])
     || F <- first_of_each_kind(Failures)],
    ok.

first_of_each_kind(Failures) ->
    lists:reverse(element(2, lists:foldl(
        fun(F, {Seen, Acc}) ->
            Key = case element(2, F) of
                      Op when is_atom(Op) -> {element(1, F), Op};
                      _ -> element(1, F)
                  end,
            case lists:member(Key, Seen) of
                true -> {Seen, Acc};
                false -> {[Key | Seen], [F | Acc]}
            end
        end, {[], []}, Failures))).

%% @doc Runs the chaos for `millis' (default 30 s) with `workers' processes (default
%% `?WORKERS') in two rounds of half that time, and checks the VM after each. Run it in a VM
%% of its own: the baseline is the whole VM's.
-spec run(options()) -> result().
run(Opts) ->
    Seed = maps:get(seed, Opts, 1),
    Half = maps:get(millis, Opts, 30000) div 2,
    Workers = maps:get(workers, Opts, ?WORKERS),
    Modules = list_to_tuple([hb_beamr_test_util:fixture(F) || F <- ?FIXTURES]),
    Baseline = warm_up(tuple_to_list(Modules)),
    Started = erlang:monotonic_time(millisecond),
    {Ops1, Failures1} = round(Modules, {Seed, 1}, Half, Workers),
    Counts1 = leftovers(Baseline),
    Rss1 = settled_rss(maps:get(rss, Baseline)),
    {Ops2, Failures2} = round(Modules, {Seed, 2}, Half, Workers),
    Counts2 = leftovers(Baseline),
    Rss2 = settled_rss(Rss1),
    %% Memory the allocators keep for reuse after the first round is no leak; growth past it
    %% in the second round is.
    Grown = [{leftover, rss, #{baseline => maps:get(rss, Baseline), after_round_1 => Rss1, after_round_2 => Rss2}}
             || Rss2 - Rss1 > ?RSS_BOUND],
    #{ops => maps:merge_with(fun(_, A, B) -> A + B end, Ops1, Ops2),
      failures => Failures1 ++ Counts1 ++ Failures2 ++ Counts2 ++ Grown,
      rss => {maps:get(rss, Baseline), Rss1, Rss2},
      millis => erlang:monotonic_time(millisecond) - Started}.

%% `Workers' processes for `Millis' on a fresh pool; then every instance is stopped.
round(Modules, Seed, Millis, Workers) ->
    Tab = ets:new(hb_beamr_chaos, [public, set, {write_concurrency, true}]),
    ets:insert(Tab, {modules, Modules}),
    Started = erlang:monotonic_time(millisecond),
    Deadline = Started + Millis,
    process_flag(trap_exit, true),
    Pids = maps:from_list([spawn_worker(Tab, Seed, N, Deadline) || N <- lists:seq(1, Workers)]),
    Progress = spawn_link(fun() -> progress(Tab, Started) end),
    supervise(Tab, Seed, Pids, Deadline, Workers + 1),
    unlink(Progress),
    exit(Progress, kill),
    process_flag(trap_exit, false),
    Stops = [{stop_hung, I} || {{started, I}} <- ets:tab2list(Tab), stop_bounded(I) =:= timeout],
    Ops = maps:from_list([{Op, N} || {{ops, Op}, N} <- ets:tab2list(Tab)]),
    Failures = [F || {{failure, _}, F} <- lists:sort(ets:tab2list(Tab))],
    %% The pool's snapshots and memory copies go before anything is measured.
    ets:delete(Tab),
    {Ops, Failures ++ Stops}.

%% One start, call and stop of each module first, so that what the NIF keeps for the VM's
%% life (the engine, its threads, the module cache) is in the baseline.
warm_up(Modules) ->
    [begin {ok, I, _, _} = hb_beamr:start(M), {ok, _} = hb_beamr_io:size(I), ok = hb_beamr:stop(I) end
     || M <- Modules],
    garbage_collect_all(),
    hb_beamr_test_util:settle(fun hb_beamr_test_util:executor_threads/0, 0),
    measure().

measure() ->
    #{executors => hb_beamr_test_util:executor_threads(),
      threads => length(element(2, file:list_dir("/proc/self/task"))),
      processes => erlang:system_info(process_count),
      rss => rss()}.

%% Executor threads, OS threads and processes back to the baseline (within 5 s).
leftovers(Baseline) ->
    garbage_collect_all(),
    Back = fun() ->
        Now = measure(),
        [{K, maps:get(K, Baseline), maps:get(K, Now)} || K <- [executors, threads, processes],
                                                         maps:get(K, Now) > maps:get(K, Baseline)]
    end,
    Counts = hb_beamr_test_util:settle(Back, []),
    [{leftover, K, #{baseline => B, now => N}} || {K, B, N} <- Counts].

%% RSS once it is within `?RSS_BOUND' of `Level', or after 5 s: the executor threads' stacks
%% and arena blocks are given back a little after the last thread exits.
settled_rss(Level) ->
    hb_beamr_test_util:settle(fun() -> rss() - Level =< ?RSS_BOUND end, true),
    rss().

garbage_collect_all() ->
    [erlang:garbage_collect(P) || P <- erlang:processes()],
    ok.

rss() ->
    {ok, Status} = file:read_file("/proc/self/status"),
    [_, Rest] = binary:split(Status, <<"VmRSS:">>),
    [Kb | _] = string:lexemes(Rest, " \t\n"),
    binary_to_integer(Kb) * 1024.

%% Replaces killed workers until the deadline; then waits for the rest, each at most
%% `?OP_BOUND' past the deadline (one still running is `hung' in its current operation).
supervise(_Tab, _Seed, Workers, _Deadline, _Next) when map_size(Workers) =:= 0 ->
    ok;
supervise(Tab, Seed, Workers, Deadline, Next) ->
    Wait = max(0, Deadline + ?OP_BOUND - erlang:monotonic_time(millisecond)),
    receive
        {'EXIT', Pid, Why} when is_map_key(Pid, Workers) ->
            Rest = maps:remove(Pid, Workers),
            Ended = Why =:= normal orelse erlang:monotonic_time(millisecond) >= Deadline,
            case Ended of
                true -> supervise(Tab, Seed, Rest, Deadline, Next);
                false ->
                    [failure(Tab, {worker_crashed, Why}) || Why =/= killed],
                    {P, N} = spawn_worker(Tab, Seed, Next, Deadline),
                    supervise(Tab, Seed, Rest#{P => N}, Deadline, Next + 1)
            end;
        {'EXIT', _Other, _} ->
            supervise(Tab, Seed, Workers, Deadline, Next)
    after Wait ->
        [begin
             Op = case ets:lookup(Tab, {doing, N}) of [{_, O}] -> O; [] -> unknown end,
             failure(Tab, {hung, element(1, Op), Op}),
             exit(P, kill)
         end || {P, N} <- maps:to_list(Workers)],
        ok
    end.

%% A line a minute, so that a run the VM does not survive still shows how far it went.
progress(Tab, Started) ->
    timer:sleep(60000),
    Ops = lists:sum([N || {{ops, _}, N} <- ets:tab2list(Tab)]),
    Failures = length([F || {{failure, _}, F} <- ets:tab2list(Tab)]),
    io:format("  chaos: ~b operations, ~b failures after ~b s~n",
              [Ops, Failures, (erlang:monotonic_time(millisecond) - Started) div 1000]),
    progress(Tab, Started).

spawn_worker(Tab, Seed, N, Deadline) ->
    Pid = spawn_link(fun() ->
        {RunSeed, Round} = Seed,
        rand:seed(exsss, {RunSeed, Round, N}),
        ets:insert(Tab, {{worker, N}, self()}),
        worker(Tab, N, Deadline)
    end),
    {Pid, N}.

failure(Tab, Failure) ->
    ets:insert(Tab, {{failure, erlang:unique_integer([monotonic])}, Failure}).

worker(Tab, N, Deadline) ->
    case erlang:monotonic_time(millisecond) < Deadline of
        true ->
            Op = pick([start, call, call, call, call_async, call_async, call_async, stop, snapshot, restore,
                       serialize, deserialize, read, write, reply_stale, kill_instance, kill_worker,
                       hibernate]),
            ets:insert(Tab, {{doing, N}, {Op}}),
            ets:update_counter(Tab, {ops, Op}, 1, {{ops, Op}, 0}),
            Began = erlang:monotonic_time(millisecond),
            try op(Op, Tab, N) of
                {bound, Bound, What} -> late(Tab, Op, Began, Bound, What);
                _ -> late(Tab, Op, Began, ?OP_BOUND, none)
            catch
                Class:Reason:Stack -> failure(Tab, {raised, Op, {Class, Reason, hd(Stack ++ [none])}})
            end,
            worker(Tab, N, Deadline);
        false ->
            ok
    end.

late(Tab, Op, Began, Bound, What) ->
    Took = erlang:monotonic_time(millisecond) - Began,
    [failure(Tab, {late, Op, #{took_ms => Took, bound_ms => Bound, what => What}}) || Took > Bound].

%% An operation; `{bound, Millis, What}' when it has a bound of its own (a call's timeout).
op(start, Tab, _N) ->
    [{modules, Modules}] = ets:lookup(Tab, modules),
    Index = rand:uniform(tuple_size(Modules)),
    Opts = pick([#{}, #{memory_limit => 1 bsl 20}, #{memory_limit => 16 bsl 20}, #{hibernate_after => 5}]),
    case hb_beamr:start(element(Index, Modules), Opts) of
        {ok, I, _Imports, Exports} ->
            Funcs = [{Name, Sig} || {func, Name, Sig} <- Exports],
            ets:insert(Tab, {{started, I}}),
            ets:insert(Tab, {{instance, rand:uniform(?POOL)}, I, #{module => Index, funcs => Funcs}});
        {error, _} ->
            ok
    end;
op(call, Tab, _N) ->
    with_instance(Tab, fun(I, Funcs) ->
        {Name, Args, Opts} = call_args(Funcs),
        panicked(Tab, Name, hb_beamr:call(I, Name, Args, fun import/3, 0, Opts)),
        {bound, maps:get(timeout, Opts) + ?MARGIN, {call, Name, Args}}
    end);
op(call_async, Tab, _N) ->
    with_instance(Tab, fun(I, Funcs) ->
        {Name, Args, Opts} = call_args(Funcs),
        case hb_beamr:call_async(I, Name, Args, Opts) of
            {ok, Ref} -> async_loop(Tab, I, Ref, Name);
            {error, _} -> ok
        end,
        {bound, maps:get(timeout, Opts) + ?MARGIN, {call_async, Name, Args}}
    end);
op(stop, Tab, _N) ->
    with_instance(Tab, fun(I, _) -> ok = hb_beamr:stop(I) end);
op(snapshot, Tab, _N) ->
    with_entry(Tab, fun(Key, I, Meta) ->
        case hb_beamr:snapshot(I, #{incremental => rand:uniform(2) =:= 1}) of
            {ok, Snap} -> ets:insert(Tab, {Key, I, Meta#{snapshot => Snap}});
            {error, _} -> ok
        end
    end);
op(restore, Tab, _N) ->
    with_entry(Tab, fun(_Key, I, Meta) ->
        case {Meta, rand:uniform(2)} of
            {#{snapshot := Snap}, 1} -> hb_beamr:restore(I, Snap);
            %% Into another instance (of another module, a mismatch): a snapshot restored
            %% into two instances or more is a base, its memory mapped copy-on-write.
            {#{snapshot := Snap}, 2} -> with_instance(Tab, fun(Other, _) -> hb_beamr:restore(Other, Snap) end);
            _ -> hb_beamr_io:snapshot(I)
        end
    end);
op(serialize, Tab, _N) ->
    with_entry(Tab, fun(Key, I, Meta) ->
        case hb_beamr:serialize(I) of
            {ok, Mem} -> ets:insert(Tab, {Key, I, Meta#{memory => Mem}});
            {error, _} -> ok
        end
    end);
op(deserialize, Tab, _N) ->
    with_entry(Tab, fun(_Key, I, Meta) ->
        hb_beamr:deserialize(I, maps:get(memory, Meta, crypto:strong_rand_bytes(rand:uniform(4096))))
    end);
op(read, Tab, _N) ->
    with_instance(Tab, fun(I, _) ->
        Read = pick([fun() -> hb_beamr_io:read(I, rand:uniform(70000) - 1, rand:uniform(4096)) end,
                     fun() -> hb_beamr_io:read_string(I, rand:uniform(65536) - 1) end,
                     fun() -> hb_beamr_io:size(I) end,
                     fun() -> hb_beamr:info(I) end]),
        Read()
    end);
op(write, Tab, _N) ->
    with_instance(Tab, fun(I, _) ->
        hb_beamr_io:write(I, rand:uniform(70000) - 1, crypto:strong_rand_bytes(rand:uniform(256)))
    end);
op(hibernate, Tab, _N) ->
    with_instance(Tab, fun(I, _) -> hibernate_answer(hb_beamr:hibernate(I)) end);
op(reply_stale, _Tab, _N) ->
    %% A reference that is no call's: refused with an error.
    hb_beamr:reply(make_ref(), [0]);
op(kill_instance, Tab, _N) ->
    with_instance(Tab, fun(I, _) -> exit(I, kill) end);
op(kill_worker, Tab, N) ->
    case ets:lookup(Tab, {worker, rand:uniform(N + ?WORKERS)}) of
        [{_, Pid}] when Pid =/= self() -> exit(Pid, kill);
        _ -> ok
    end.

hibernate_answer(ok) -> ok;
hibernate_answer({error, Why}) when Why =:= busy; Why =:= stopped; Why =:= call_in_progress -> ok.

with_instance(Tab, Fun) ->
    with_entry(Tab, fun(_Key, I, #{funcs := Funcs}) -> Fun(I, Funcs) end).

with_entry(Tab, Fun) ->
    Key = {instance, rand:uniform(?POOL)},
    case ets:lookup(Tab, Key) of
        [{Key, I, Meta}] -> Fun(Key, I, Meta);
        [] -> ok
    end.

call_args(Funcs) ->
    {Name, Sig} = pick(Funcs),
    "(" ++ Params = Sig,
    Args = [arg(C) || C <- lists:takewhile(fun(C) -> C =/= $) end, Params)],
    {Name, Args, #{timeout => pick([10, 50, 200, 1000])}}.

%% Mostly small (counts and pages that end soon), sometimes anything.
arg(C) when C =:= $i; C =:= $I -> pick([0, 1, 2, 10, 100, rand:uniform(1000), -1, 16#7FFFFFFF]);
arg(C) when C =:= $f; C =:= $F -> pick([0.0, 1.5, nan]);
arg(_) -> null.

%% Imports answered with zeros, after a pause now and then, or by a nested memory read;
%% or thrown at (`{import_exception, Reason}', to the nearest `invoke_*' or the caller).
import(State, #{instance := I, func_sig := Sig}, _Opts) ->
    case rand:uniform(8) of
        1 -> timer:sleep(rand:uniform(5)), {ok, zeros(Sig), State};
        2 -> hb_beamr_io:read(I, 0, 8), {ok, zeros(Sig), State};
        3 -> {import_exception, chaos, State};
        %% Refused (`call_in_progress') while the call waits for this answer; a call that
        %% ended meanwhile (stopped, timed out) leaves the instance free to hibernate.
        4 -> hibernate_answer(hb_beamr:hibernate(I)), {ok, zeros(Sig), State};
        _ -> {ok, zeros(Sig), State}
    end.

zeros(Sig) ->
    [_, Results] = string:split(Sig, ")"),
    [case C of $f -> 0.0; $F -> 0.0; _ -> 0 end || C <- Results].

%% Serves the call's imports (answering, failing or stopping the instance) until its result;
%% then makes sure no import of the same call follows it.
async_loop(Tab, I, Ref, Name) ->
    receive
        {hb_beamr_import, Ref, #{func_sig := Sig}} ->
            case rand:uniform(10) of
                1 -> hb_beamr:reply(Ref, {error, chaos});
                2 -> hb_beamr:stop(I);
                3 -> hb_beamr:reply(Ref, {import_exception, chaos});
                _ -> hb_beamr:reply(Ref, zeros(Sig))
            end,
            async_loop(Tab, I, Ref, Name);
        {hb_beamr_result, Ref, Result} ->
            panicked(Tab, Name, Result),
            receive
                {hb_beamr_import, Ref, Request} ->
                    failure(Tab, {import_after_result, Name, #{result => Result, import => Request}})
            after 5 ->
                ok
            end
    after ?OP_BOUND + ?MARGIN ->
        failure(Tab, {late, call_async, #{func => Name, never_answered => true}})
    end.

panicked(Tab, Name, Result) ->
    Text = iolist_to_binary(io_lib:format("~0p", [Result])),
    case binary:match(Text, [<<"panicked">>, <<"unwrap">>]) of
        nomatch -> ok;
        _ -> failure(Tab, {panic, Name, Result})
    end.

stop_bounded(I) ->
    {Pid, Ref} = spawn_monitor(fun() -> hb_beamr:stop(I) end),
    receive {'DOWN', Ref, process, Pid, _} -> ok
    after ?OP_BOUND -> exit(Pid, kill), timeout
    end.

pick(List) ->
    lists:nth(rand:uniform(length(List)), List).
