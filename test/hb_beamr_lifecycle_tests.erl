%%% @doc Starting, waiting and stopping under adversity: starters killed at random
%%% moments leave nothing behind, a caller whose instance dies under it gets `stopped'
%%% instead of waiting forever, and `stop/1' only stops instances.
-module(hb_beamr_lifecycle_tests).

-include_lib("eunit/include/eunit.hrl").

-import(hb_beamr_test_util, [fixture/1, start_fixture/1]).

%% Run in a child VM.
-export([start_raising/0, lost_events/0]).

-define(KILLED_STARTS, 1000).

%%% Starters killed during start/1

%% Each start runs in a process killed after a random delay that spans the whole start
%% (the dirty NIF, the wait for the executor, the hand-over of the pid). Starts that
%% finished before the kill are stopped here; nothing else may remain.
killed_starters_leak_nothing_test_() ->
    {timeout, 120, fun killed_starters_leak_nothing/0}.

killed_starters_leak_nothing() ->
    Wasm = fixture("core.wat"),
    StartMicros = start_micros(Wasm),
    Baseline = settled_counts(counts(), 2000),
    MaxDelay = max(200, 3 * StartMicros),
    Outcomes = [kill_during_start(Wasm, rand:uniform(MaxDelay + 1) - 1)
                || _ <- lists:seq(1, ?KILLED_STARTS)],
    [ok = hb_beamr:stop(I) || {finished, I} <- Outcomes],
    Killed = length([killed || killed <- Outcomes]),
    io:format(user, "~n  ~b starts (~b us each) killed after 0..~b us: ~b killed mid-start, ~b finished~n",
              [?KILLED_STARTS, StartMicros, MaxDelay, Killed, ?KILLED_STARTS - Killed]),
    ?assert(Killed > ?KILLED_STARTS div 10),
    ?assertEqual(Baseline, settled_counts(Baseline, 10000)).

%% The median time of a start of `Wasm' (compiled and cached by the first one).
start_micros(Wasm) ->
    Times = [begin
                 {Micros, {ok, I, _, _}} = timer:tc(hb_beamr, start, [Wasm]),
                 ok = hb_beamr:stop(I),
                 Micros
             end || _ <- lists:seq(1, 21)],
    lists:nth(11, lists:sort(Times)).

%% `finished' (with the instance) when the start returned before the kill landed.
kill_during_start(Wasm, DelayMicros) ->
    Self = self(),
    {Starter, Monitor} = spawn_monitor(fun() -> Self ! {self(), hb_beamr:start(Wasm)} end),
    spin_until(erlang:monotonic_time(microsecond) + DelayMicros),
    exit(Starter, kill),
    %% Its result, if any, arrives before its 'DOWN'.
    receive {'DOWN', Monitor, process, Starter, _} -> ok end,
    receive
        {Starter, {ok, I, _, _}} -> {finished, I}
    after 0 ->
        killed
    end.

spin_until(Deadline) ->
    case erlang:monotonic_time(microsecond) >= Deadline of
        true -> ok;
        false -> spin_until(Deadline)
    end.

%% VM processes, owner processes and executor threads.
counts() ->
    #{processes => erlang:system_info(process_count),
      owners => length([P || P <- erlang:processes(), is_owner(P)]),
      executor_threads => executor_threads()}.

is_owner(Pid) ->
    erlang:process_info(Pid, initial_call) =:= {initial_call, {hb_beamr_owner, owner, 1}}.

%% Threads of this VM named after the executor (`/proc/<pid>/task/*/comm').
executor_threads() ->
    Tasks = "/proc/" ++ os:getpid() ++ "/task",
    {ok, Ids} = file:list_dir(Tasks),
    length([Id || Id <- Ids,
                  file:read_file(filename:join([Tasks, Id, "comm"])) =:= {ok, <<"hb_beamr_exec\n">>}]).

%% Waits (up to `Millis') until the counts are `Expected'; the counts last seen.
settled_counts(Expected, Millis) ->
    case counts() of
        Expected -> Expected;
        Counts when Millis =< 0 -> Counts;
        _ -> timer:sleep(20), settled_counts(Expected, Millis - 20)
    end.

%% A NIF that raises mid-start must not leave the owner behind either.
raising_start_kills_owner_test_() ->
    {timeout, 60, fun() ->
        Nif = "start(_Owner, _Wasm, _Opts) -> error(boom).",
        ?assertEqual({raised, error, boom, []}, in_child_with_nif(Nif, start_raising))
    end}.

%% @private Runs in the child VM: the exception, and the processes it left behind.
-spec start_raising() -> {raised, atom(), term(), [pid()]} | {returned, term()}.
start_raising() ->
    Before = erlang:processes(),
    try hb_beamr:start(<<"(module)">>) of
        Result -> {returned, Result}
    catch
        Class:Reason ->
            timer:sleep(100),
            {raised, Class, Reason, erlang:processes() -- Before}
    end.

%% Runs `?MODULE:Fun()' in a child VM whose `hb_beamr_nif' is a stand-in defined by the
%% function clauses `Nif' (so that this VM keeps the real NIF).
in_child_with_nif(Nif, Fun) ->
    %% OTP 25 also returns the (non-distributed) node name.
    {ok, Peer, _Node} = peer:start_link(#{connection => standard_io, args => ["-pa" | code:get_path()]}),
    try
        {module, hb_beamr} = peer:call(Peer, code, ensure_loaded, [hb_beamr]),
        {module, hb_beamr_nif} = peer:call(Peer, code, load_binary, [hb_beamr_nif, "stand-in", stand_in(Nif)]),
        peer:call(Peer, ?MODULE, Fun, [], 30000)
    after
        peer:stop(Peer)
    end.

stand_in(Nif) ->
    Source = "-module(hb_beamr_nif).\n-compile([export_all, nowarn_export_all]).\n" ++ Nif,
    {ok, Tokens, _} = erl_scan:string(Source),
    Forms = [begin {ok, Form} = erl_parse:parse_form(F), Form end || F <- split_forms(Tokens, [])],
    {ok, hb_beamr_nif, Bin} = compile:forms(Forms),
    Bin.

split_forms([], []) -> [];
split_forms([{dot, _} = Dot | Rest], Acc) -> [lists:reverse([Dot | Acc]) | split_forms(Rest, [])];
split_forms([Token | Rest], Acc) -> split_forms(Rest, [Token | Acc]).

failed_starts_leave_nothing_test() ->
    Baseline = settled_counts(counts(), 2000),
    ?assertMatch({error, {invalid_module, _}}, hb_beamr:start(<<"not wasm">>)),
    ?assertMatch({error, {trap, unreachable, _}}, hb_beamr:start(fixture("start_traps.wat"))),
    ?assertEqual(Baseline, settled_counts(Baseline, 5000)).

%%% Callers waiting for an instance that dies

%% The owner is killed while a call waits in `receive' for an import-less long call:
%% the caller gets `stopped' and its mailbox holds nothing afterwards.
owner_killed_while_caller_waits_test() ->
    I = start_fixture("core.wat"),
    Caller = waiting_caller(fun() -> hb_beamr:call(I, "loop_forever", []) end),
    exit(I, kill),
    ?assertEqual({{error, stopped}, []}, caller_result(Caller)).

owner_killed_while_caller_with_state_waits_test() ->
    I = start_fixture("core.wat"),
    Caller = waiting_caller(fun() -> hb_beamr:call(I, "loop_forever", [], fun hb_beamr:stub/3, state) end),
    exit(I, kill),
    ?assertEqual({{error, stopped, state}, []}, caller_result(Caller)).

%% A memory request queued behind a call that never ends.
owner_killed_while_memory_request_waits_test() ->
    I = start_fixture("core.wat"),
    Looping = waiting_caller(fun() -> hb_beamr:call(I, "loop_forever", []) end),
    Reader = waiting_caller(fun() -> hb_beamr_io:read(I, 16, 5) end),
    exit(I, kill),
    ?assertEqual({{error, stopped}, []}, caller_result(Looping)),
    ?assertEqual({{error, stopped}, []}, caller_result(Reader)).

%% After an import handler failed, the caller waits for the call to unwind; the owner
%% dies meanwhile.
owner_killed_after_import_failed_test() ->
    I = start_fixture("core.wat"),
    Fails = fun(_, _, _) -> exit(I, kill), error(boom) end,
    Caller = waiting_caller(fun() -> hb_beamr:call(I, "wait_import", [], Fails, state) end),
    ?assertMatch({{error, _, state}, []}, caller_result(Caller)).

%% Events that never come (an executor gone silent): the stand-in NIF starts instances
%% but never answers a call or a memory request, nor confirms a failed import. Killing
%% the owner must release every waiting caller.
lost_events_test_() ->
    {timeout, 60, fun() ->
        Nif = "start(_Owner, _Wasm, _Opts) -> self() ! {hb_beamr, 1, {ok, []}}, {ok, 1, [], []}.\n"
              "call(_I, \"import\", _Args) -> {event, 2, {import, make_ref(), 0, \"env\", \"f\", \"()\", []}};\n"
              "call(_I, _Func, _Args) -> {wait, 3}.\n"
              "memory_size(_I) -> {wait, 4}.\n"
              "import_failed(_Call) -> ok.\n",
        ?assertEqual([{{error, stopped}, []}, {{error, stopped, state}, []}, {{error, stopped}, []}],
                     in_child_with_nif(Nif, lost_events))
    end}.

%% @private Runs in the child VM: what each waiting caller got once the owner died, and
%% what its mailbox held afterwards (`hang' if it got nothing).
-spec lost_events() -> [{term(), [term()]} | hang].
lost_events() ->
    Fails = fun(_, _, _) -> error(boom) end,
    Waits = [fun(I) -> hb_beamr:call(I, "f", []) end,
             fun(I) -> hb_beamr:call(I, "import", [], Fails, state) end,
             fun(I) -> hb_beamr_io:size(I) end],
    Callers = [begin
                   {ok, I, [], []} = hb_beamr:start(<<"(module)">>),
                   {I, waiting_caller(fun() -> Wait(I) end)}
               end || Wait <- Waits],
    [exit(I, kill) || {I, _} <- Callers],
    [receive {Caller, Result, Messages} -> {Result, Messages} after 5000 -> hang end
     || {_, Caller} <- Callers].

%% Runs `Call' in a process that reports its result and then what its mailbox holds
%% (after a pause, so that a late message would be there); returns once the call waits.
waiting_caller(Call) ->
    Self = self(),
    Pid = spawn(fun() ->
                    Result = Call(),
                    timer:sleep(200),
                    {messages, Messages} = process_info(self(), messages),
                    Self ! {self(), Result, Messages}
                end),
    timer:sleep(100),
    Pid.

caller_result(Pid) ->
    receive {Pid, Result, Messages} -> {Result, Messages}
    after 5000 -> error({caller_hangs, process_info(Pid, current_stacktrace)})
    end.

%%% stop/1 stops instances only

stop_leaves_other_processes_alone_test() ->
    ?assertEqual({error, {badarg, {instance, self()}}}, hb_beamr:stop(self())),
    Other = spawn(fun() -> receive stop -> ok end end),
    ?assertEqual({error, {badarg, {instance, Other}}}, hb_beamr:stop(Other)),
    ?assert(is_process_alive(Other)),
    Other ! stop.

stop_of_a_dead_pid_is_ok_test() ->
    {Dead, Monitor} = spawn_monitor(fun() -> ok end),
    receive {'DOWN', Monitor, process, Dead, _} -> ok end,
    ?assertEqual(ok, hb_beamr:stop(Dead)).

stop_of_non_pids_test() ->
    ?assertEqual({error, {badarg, {instance, not_a_pid}}}, hb_beamr:stop(not_a_pid)),
    ?assertEqual({error, {badarg, {instance, #{}}}}, hb_beamr:stop(#{})).

stop_is_idempotent_test() ->
    I = start_fixture("core.wat"),
    ?assertEqual(ok, hb_beamr:stop(I)),
    ?assertEqual(ok, hb_beamr:stop(I)),
    ?assertNot(is_process_alive(I)),
    %% Stopped, but its owner still alive (as between the two steps of a stop).
    J = start_fixture("core.wat"),
    ok = hb_beamr_nif:stop(J),
    ?assert(is_process_alive(J)),
    ?assertEqual(ok, hb_beamr:stop(J)),
    ?assertEqual(ok, hb_beamr:stop(J)),
    ?assertEqual({error, stopped}, hb_beamr:call(J, "add", [1, 2])).

concurrent_stops_test() ->
    I = start_fixture("core.wat"),
    Self = self(),
    Stoppers = [spawn(fun() -> Self ! {self(), hb_beamr:stop(I)} end) || _ <- lists:seq(1, 8)],
    ?assertEqual(lists:duplicate(8, ok), [receive {P, R} -> R end || P <- Stoppers]),
    ?assertNot(is_process_alive(I)).

%%% The owner process of an idle instance

%% It hibernates (a heap of a few words, not a fresh process's 233: 10,000 of those grew
%% ERTS's heap carriers), drops messages sent to it instead of keeping them for ever, and
%% the instance still answers and stops as before.
idle_owner_is_small_and_drops_stray_messages_test() ->
    I = start_fixture("core.wat"),
    {total_heap_size, Words} = wait_hibernated(I, 100),
    ?assert(Words < 233),
    [I ! {stray, N} || N <- lists:seq(1, 1000)],
    ?assertEqual({ok, [3]}, hb_beamr:call(I, "add", [1, 2])),
    %% Back in hibernation with its queue empty (a woken owner still shows `hibernate'
    %% until it runs, so both are waited for).
    {total_heap_size, _} = wait_hibernated(I, 100),
    ?assertEqual({ok, [7]}, hb_beamr:call(I, "add", [3, 4])),
    ?assertEqual(ok, hb_beamr:stop(I)),
    ?assertNot(is_process_alive(I)).

wait_hibernated(Owner, Tries) ->
    case process_info(Owner, [current_function, message_queue_len, total_heap_size]) of
        [{current_function, {erlang, hibernate, 3}}, {message_queue_len, 0}, Size] -> Size;
        _ when Tries > 0 -> timer:sleep(10), wait_hibernated(Owner, Tries - 1)
    end.

%%% What an instance costs in memory mappings (Linux allows 65,530 per process by default)

%% Each live instance that has run a call maps its executor's stacks (thread and signal
%% stack, one mapping split by a guard page), its wasm memory (the accessible part and the
%% rest of the reservation) and its wasm stack (stack and guard page): 6. Stopping gives
%% them all back.
mappings_per_instance_test_() ->
    {timeout, 60, fun() ->
        N = 50,
        Wasm = fixture("core.wat"),
        ok = hb_beamr:stop(start_fixture("core.wat")),
        Before = settled_mappings(mappings(), 5000),
        Instances = [begin {ok, I, _, _} = hb_beamr:start(Wasm), I end || _ <- lists:seq(1, N)],
        [{ok, [3]} = hb_beamr:call(I, "add", [1, 2]) || I <- Instances],
        Live = mappings(),
        [ok = hb_beamr:stop(I) || I <- Instances],
        After = settled_mappings(Before, 10000),
        io:format(user, "~n  mappings: ~b before, ~b with ~b instances live, ~b after they stopped~n",
                  [Before, Live, N, After]),
        ?assert(Live - Before =< 6 * N + 10),
        ?assert(After =< Before + 10)
    end}.

mappings() ->
    {ok, Maps} = file:read_file("/proc/self/maps"),
    length(binary:split(Maps, <<"\n">>, [global, trim])).

%% Waits (up to `Millis') until there are at most `Expected' mappings; the count last seen.
settled_mappings(Expected, Millis) ->
    case mappings() of
        Count when Count =< Expected; Millis =< 0 -> Count;
        _ -> timer:sleep(50), settled_mappings(Expected, Millis - 50)
    end.
