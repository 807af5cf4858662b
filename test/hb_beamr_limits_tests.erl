%%% @doc Untrusted modules cannot hurt the node: nesting depth, stop without signals,
%%% timeouts, gas and memory limits (test/fixtures/limits.wat).
-module(hb_beamr_limits_tests).

-include_lib("eunit/include/eunit.hrl").

-define(DEEP, 100000).

-export([start_and_stop/1]).

start() ->
    start(#{}).

start(Opts) ->
    {ok, I, _, _} = hb_beamr:start(hb_beamr_test_util:fixture("limits.wat"), Opts),
    I.

%% The handler of env.reenter calls the export again: the depth is bounded, the innermost
%% call gets stack_overflow, and the VM and the instance live on.
import_reentry_depth_is_bounded_test_() ->
    {timeout, 120, fun() ->
        I = start(),
        Self = self(),
        Reenter = fun Reenter(S, #{func := "reenter", args := [N]}, _) ->
            case hb_beamr:call(I, "reenter", [N - 1], Reenter, S) of
                {ok, Results, S1} -> {ok, Results, S1 + 1};
                {error, Reason, _} -> Self ! {innermost, N, Reason}, error(nested_failed)
            end
        end,
        {error, {import_failed, "env", "reenter", _}, 0} =
            hb_beamr:call(I, "reenter", [?DEEP], Reenter, 0),
        {Depth, Innermost} = receive {innermost, N, R} -> {?DEEP - N, R} after 0 -> none end,
        ?assertMatch({trap, stack_overflow, _}, Innermost),
        ?assert(Depth >= 100),
        flush_innermost(),
        %% Within the bound, nesting works and counts every level.
        ?assertEqual({ok, [0], 50}, hb_beamr:call(I, "reenter", [50], Reenter, 0)),
        ?assertEqual({ok, [0]}, hb_beamr:call(I, "reenter", [0])),
        hb_beamr:stop(I)
    end}.

flush_innermost() ->
    receive {innermost, _, _} -> flush_innermost() after 0 -> ok end.

invoke_recursion_depth_is_bounded_test_() ->
    {timeout, 60, fun() ->
        I = start(),
        ?assertMatch({error, {trap, stack_overflow, _}}, hb_beamr:call(I, "recurse_invoke", [?DEEP])),
        ?assertEqual({ok, []}, hb_beamr:call(I, "recurse_invoke", [100])),
        ?assertMatch({error, {trap, stack_overflow, _}}, hb_beamr:call(I, "recurse", [0])),
        ?assertEqual({ok, []}, hb_beamr:call(I, "recurse_invoke", [10])),
        hb_beamr:stop(I)
    end}.

%% stop/1 while the module throws and catches exceptions in an endless loop: the old
%% signal-based interrupt could land inside the runtime's throw and deadlock it.
stop_while_throwing_test_() ->
    {timeout, 300, fun() ->
        Wasm = hb_beamr_test_util:fixture("limits.wat"),
        Threads = hb_beamr_test_util:executor_threads(),
        lists:foreach(fun(K) -> stop_while_throwing(Wasm, K) end, lists:seq(1, 1000)),
        ?assertEqual(Threads, hb_beamr_test_util:settle(fun hb_beamr_test_util:executor_threads/0, Threads))
    end}.

stop_while_throwing(Wasm, K) ->
    {ok, I, _, _} = hb_beamr:start(Wasm),
    Self = self(),
    spawn(fun() -> Self ! {K, hb_beamr:call(I, "throw_loop", [])} end),
    timer:sleep(1 + K rem 4),
    ok = hb_beamr:stop(I),
    receive
        {K, Result} -> ?assertEqual({error, stopped}, Result)
    after 1000 -> error({no_answer_within_1s, K})
    end.

%% wasmer keeps every exception thrown in the Store; the executor drops each call's once
%% the call is over. 5,000,000 throws (about 2 GB before) leave the VM's size alone.
exceptions_do_not_accumulate_test_() ->
    {timeout, 300, fun() ->
        I = start(),
        Batch = 50000,
        ?assertEqual({ok, [2 * Batch]}, hb_beamr:call(I, "throw_n", [Batch])),
        Before = hb_beamr_test_util:resident_mb(),
        Results = [hb_beamr:call(I, "throw_n", [Batch]) || _ <- lists:seq(1, 100)],
        Growth = hb_beamr_test_util:resident_mb() - Before,
        ?assertEqual([{ok, [2 * Batch]}], lists:usort(Results)),
        ?assert(Growth < 64),
        hb_beamr:stop(I)
    end}.

timeout_ends_a_runaway_call_test() ->
    I = start(),
    {Micros, Result} = timer:tc(fun() -> hb_beamr:call(I, "spin", [], fun hb_beamr:stub/3, st, #{timeout => 50}) end),
    ?assertMatch({error, {trap, timeout, _}, st}, Result),
    ?assert(Micros >= 50000),
    %% Usable afterwards, and an expired deadline does not carry over.
    ?assertEqual({ok, [15], st}, hb_beamr:call(I, "work", [3], fun hb_beamr:stub/3, st, #{timeout => 1000})),
    ?assertEqual({ok, [2]}, hb_beamr:call(I, "grow", [0])),
    hb_beamr:stop(I).

timeout_cannot_be_caught_by_wasm_test() ->
    I = start(),
    ?assertMatch({error, {trap, timeout, _}, s},
                 hb_beamr:call(I, "spin_in_catch_all", [], fun hb_beamr:stub/3, s, #{timeout => 20})),
    Self = self(),
    spawn(fun() -> Self ! {spun, hb_beamr:call(I, "spin_in_catch_all", [])} end),
    timer:sleep(20),
    ok = hb_beamr:stop(I),
    ?assertEqual({error, stopped}, receive {spun, R} -> R after 1000 -> no_answer end).

timeout_during_an_import_traps_when_the_fun_returns_test() ->
    I = start(),
    Slow = fun(S, #{func := "wait"}, _) -> timer:sleep(100), {ok, [], S + 1} end,
    ?assertMatch({error, {trap, timeout, _}, 1},
                 hb_beamr:call(I, "wait_then_spin", [], Slow, 0, #{timeout => 20})),
    hb_beamr:stop(I).

bad_call_options_test() ->
    I = start(),
    ?assertEqual({error, {badarg, {options, {timeout, -1}}}, s},
                 hb_beamr:call(I, "work", [1], fun hb_beamr:stub/3, s, #{timeout => -1})),
    ?assertEqual({error, {badarg, {options, {gas, foo}}}, s},
                 hb_beamr:call(I, "work", [1], fun hb_beamr:stub/3, s, #{gas => foo})),
    %% Keys that are not limits belong to the import fun.
    ?assertMatch({ok, [_], s}, hb_beamr:call(I, "work", [1], fun hb_beamr:stub/3, s, #{mine => 1, gas => infinity})),
    hb_beamr:stop(I).

out_of_gas_test() ->
    I = start(),
    Call = fun(Func, Args, Gas) -> hb_beamr:call(I, Func, Args, fun hb_beamr:stub/3, s, #{gas => Gas}) end,
    ?assertMatch({error, {trap, out_of_gas, _}, s}, Call("spin", [], 100000)),
    ?assertEqual({ok, 100000}, hb_beamr:gas_used(I)),
    %% The work depends on mem[0], so each call starts from the same state.
    ok = hb_beamr_io:write(I, 0, <<10:32/little>>),
    {ok, [_], s} = Call("work", [10], infinity),
    {ok, Used} = hb_beamr:gas_used(I),
    ?assert(Used > 20 * 20),
    ok = hb_beamr_io:write(I, 0, <<10:32/little>>),
    ?assertMatch({ok, [_], s}, Call("work", [10], Used)),
    ok = hb_beamr_io:write(I, 0, <<10:32/little>>),
    ?assertMatch({error, {trap, out_of_gas, _}, s}, Call("work", [10], Used - 1)),
    hb_beamr:stop(I).

gas_is_deterministic_test() ->
    Run = fun(I) ->
        {ok, [Acc]} = hb_beamr:call(I, "work", [1000]),
        {ok, Gas} = hb_beamr:gas_used(I),
        {Acc, Gas}
    end,
    [A, B] = [start(), start()],
    [{ok, _} = hb_beamr:call(X, "work", [37]) || X <- [A, B]],
    First = Run(A),
    ?assertEqual(First, Run(B)),
    %% Across serialize -> deserialize into a fresh instance.
    {ok, Memory} = hb_beamr:serialize(A),
    Second = Run(A),
    ?assertNotEqual(First, Second),
    C = start(),
    ok = hb_beamr:deserialize(C, Memory),
    ?assertEqual(Second, Run(C)),
    [hb_beamr:stop(X) || X <- [A, B, C]].

memory_limit_test() ->
    %% WAMR's extra page: the module starts with 2 pages; its table's entry takes 8 bytes.
    I = start(#{memory_limit => 10 * 65536 + 8}),
    ?assertEqual({ok, [2]}, hb_beamr:call(I, "grow", [8])),
    ?assertEqual({ok, [-1]}, hb_beamr:call(I, "grow", [1])),
    ?assertEqual({ok, 10 * 65536}, hb_beamr_io:size(I)),
    %% A snapshot larger than the limit is refused.
    Big = start(),
    {ok, [2]} = hb_beamr:call(Big, "grow", [20]),
    {ok, Snapshot} = hb_beamr:serialize(Big),
    ?assertMatch({error, {too_large, _, _}}, hb_beamr:deserialize(I, Snapshot)),
    ?assertEqual({error, {memory_limit, 2 * 65536 + 8, 65536}},
                 hb_beamr:start(hb_beamr_test_util:fixture("limits.wat"), #{memory_limit => 65536})),
    ?assertEqual({error, {badarg, {options, {memory_limit, -5}}}},
                 hb_beamr:start(hb_beamr_test_util:fixture("limits.wat"), #{memory_limit => -5})),
    [hb_beamr:stop(X) || X <- [I, Big]].

memory_limit_application_default_test() ->
    application:set_env(hb_beamr, memory_limit, 65536),
    try
        ?assertMatch({error, {memory_limit, _, 65536}}, hb_beamr:start(hb_beamr_test_util:fixture("limits.wat"))),
        %% An explicit option wins.
        I = start(#{memory_limit => 1 bsl 20}),
        hb_beamr:stop(I)
    after
        application:unset_env(hb_beamr, memory_limit)
    end.

%% The interruption check never shows: no extra import or export is listed.
check_import_is_hidden_test() ->
    {ok, I, Imports, Exports} = hb_beamr:start(hb_beamr_test_util:fixture("limits.wat")),
    ?assertEqual(["env"], lists:usort([M || {func, M, _, _} <- Imports])),
    ?assertEqual([], [N || {_, "__hb_beamr" ++ _ = N, _} <- Exports]),
    hb_beamr:stop(I).

%% The OS refuses a mapping (here: an address-space limit with room for one instance's
%% memory reservation, not two): start/1 says so, and the VM and its instances live on.
resource_limit_in_a_child_vm_test_() ->
    {timeout, 120, fun() ->
        {Peer, Node} = hb_beamr_test_util:address_limited_peer(12 bsl 30),
        Wasm = hb_beamr_test_util:fixture("core.wat"),
        {Started, Refused} = erpc:call(Node, hb_beamr_test_util, start_until_refused, [Wasm, 16]),
        ?assertEqual({error, {resource_limit, memory}}, Refused),
        ?assertMatch([_ | _], Started),
        ?assertEqual([{ok, [3]} || _ <- Started], [erpc:call(Node, hb_beamr, call, [I, "add", [1, 2]]) || I <- Started]),
        %% Stopped instances free their memory once their executors have exited.
        [ok = erpc:call(Node, hb_beamr, stop, [I]) || I <- Started],
        StartAgain = fun() -> erpc:call(Node, ?MODULE, start_and_stop, [Wasm]) end,
        ?assertEqual(ok, hb_beamr_test_util:settle(StartAgain, ok)),
        peer:stop(Peer)
    end}.

%% The OS refuses the executor thread (here: a limit on the number of threads of the
%% user the child VM runs as, with room for the VM's own and a few more): start/1 says
%% so, and the VM and its instances live on.
thread_limit_in_a_child_vm_test_() ->
    {timeout, 120, fun() ->
        {Exec, Args, CodePath} = hb_beamr_test_util:thread_limited_erl(8, [?MODULE]),
        {ok, Peer, _} = peer:start_link(#{exec => {Exec, Args}, connection => standard_io,
                                       args => ["-pa" | CodePath]}),
        Wasm = hb_beamr_test_util:fixture("core.wat"),
        {Started, Refused} = peer:call(Peer, hb_beamr_test_util, start_until_refused, [Wasm, 64], 60000),
        ?assertEqual({error, {resource_limit, thread}}, Refused),
        ?assertMatch([_ | _], Started),
        ?assertEqual([{ok, [3]} || _ <- Started], [peer:call(Peer, hb_beamr, call, [I, "add", [1, 2]]) || I <- Started]),
        %% Stopped instances give their threads back once their executors have exited.
        [ok = peer:call(Peer, hb_beamr, stop, [I]) || I <- Started],
        StartAgain = fun() -> peer:call(Peer, ?MODULE, start_and_stop, [Wasm]) end,
        ?assertEqual(ok, hb_beamr_test_util:settle(StartAgain, ok)),
        peer:stop(Peer),
        hb_beamr_test_util:remove_copy(CodePath)
    end}.

%% @private
-spec start_and_stop(binary()) -> ok | {error, term()}.
start_and_stop(Wasm) ->
    case hb_beamr:start(Wasm) of
        {ok, I, _, _} -> hb_beamr:stop(I);
        Refused -> Refused
    end.

