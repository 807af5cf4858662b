%%% @doc Asynchronous calls (`call_async/4', `reply/2'), the seed's raw protocol
%%% (`wasm_send/2') and `info/1'.
-module(hb_beamr_async_tests).

-include_lib("eunit/include/eunit.hrl").

start() ->
    hb_beamr_test_util:start_fixture("core.wat").

%% Receives call `Ref''s next message (import or result).
next(Ref) ->
    receive
        {hb_beamr_import, Ref, Request} -> {import, Request};
        {hb_beamr_result, Ref, Result} -> {result, Result}
    after 5000 -> error(no_message)
    end.

result_and_imports_test() ->
    I = start(),
    {ok, Plain} = hb_beamr:call_async(I, "add", [1, 2], #{}),
    ?assert(is_reference(Plain)),
    ?assertEqual({result, {ok, [3]}}, next(Plain)),
    {ok, Ref} = hb_beamr:call_async(I, "call_host_add", [2, 3], #{}),
    ?assertEqual({import, #{instance => I, module => "env", func => "host_add",
                            args => [2, 3], func_sig => "(ii)i"}}, next(Ref)),
    %% While the import waits, the caller may use the instance as an import fun may.
    ?assertEqual({ok, <<"hello">>}, hb_beamr_io:read(I, 16, 5)),
    ?assertEqual({ok, [4]}, hb_beamr:call(I, "add", [2, 2])),
    ?assertEqual(ok, hb_beamr:reply(Ref, [5])),
    ?assertEqual({result, {ok, [5]}}, next(Ref)),
    %% Answered already.
    ?assertEqual({error, badarg}, hb_beamr:reply(Ref, [5])),
    {ok, Log} = hb_beamr:call_async(I, "log_twice", [7], #{}),
    {import, #{func := "log", args := [7]}} = next(Log),
    ok = hb_beamr:reply(Log, []),
    {import, #{func := "log", args := [7]}} = next(Log),
    ok = hb_beamr:reply(Log, []),
    ?assertEqual({result, {ok, []}}, next(Log)),
    hb_beamr:stop(I).

failed_imports_test() ->
    I = start(),
    {ok, Ref} = hb_beamr:call_async(I, "call_host_add", [2, 3], #{}),
    {import, _} = next(Ref),
    ?assertEqual(ok, hb_beamr:reply(Ref, {error, nope})),
    ?assertEqual({result, {error, {import_failed, "env", "host_add", nope}}}, next(Ref)),
    {ok, Bad} = hb_beamr:call_async(I, "call_host_add", [2, 3], #{}),
    {import, _} = next(Bad),
    ?assertMatch({error, {badarg, _}}, hb_beamr:reply(Bad, [foo])),
    ?assertEqual({result, {error, {import_failed, "env", "host_add", {bad_import_results, [foo]}}}},
                 next(Bad)),
    %% Another process may not answer.
    {ok, Other} = hb_beamr:call_async(I, "call_host_add", [2, 3], #{}),
    {import, _} = next(Other),
    Parent = self(),
    spawn(fun() -> Parent ! {answer, hb_beamr:reply(Other, [1])} end),
    ?assertEqual({error, badarg}, receive {answer, A} -> A end),
    ok = hb_beamr:reply(Other, [6]),
    ?assertEqual({result, {ok, [6]}}, next(Other)),
    ?assertEqual({ok, [3]}, hb_beamr:call(I, "add", [1, 2])),
    hb_beamr:stop(I).

refused_calls_test() ->
    I = start(),
    ?assertEqual({error, {not_found, "nope"}}, hb_beamr:call_async(I, "nope", [], #{})),
    ?assertMatch({error, {badarg, _}}, hb_beamr:call_async(I, "add", [1], #{})),
    ?assertEqual({error, {badarg, {options, x}}}, hb_beamr:call_async(I, "add", [1, 2], x)),
    ?assertMatch({error, {badarg, {options, _}}}, hb_beamr:call_async(I, "add", [1, 2], #{timeout => x})),
    {ok, Slow} = hb_beamr:call_async(I, "loop_forever", [], #{timeout => 20}),
    ?assertMatch({result, {error, {trap, timeout, _}}}, next(Slow)),
    {ok, Hungry} = hb_beamr:call_async(I, "loop_forever", [], #{gas => 10000}),
    ?assertMatch({result, {error, {trap, out_of_gas, _}}}, next(Hungry)),
    hb_beamr:stop(I),
    ?assertEqual({error, stopped}, hb_beamr:call_async(I, "add", [1, 2], #{})).

%% One process drives 100 instances at once, each call making an import.
hundred_instances_test_() ->
    {timeout, 60, fun() ->
        Instances = [{N, start()} || N <- lists:seq(1, 100)],
        Calls = maps:from_list([{Ref, N} || {N, I} <- Instances,
                                            {ok, Ref} <- [hb_beamr:call_async(I, "call_host_add", [N, N], #{})]]),
        ?assertEqual(100, map_size(Calls)),
        Results = drive(Calls, #{}),
        ?assertEqual(maps:from_list([{N, {ok, [3 * N]}} || N <- lists:seq(1, 100)]), Results),
        [hb_beamr:stop(I) || {_, I} <- Instances]
    end}.

%% Answers every import (A + B + A) until each call's result is in.
drive(Calls, Results) when map_size(Results) =:= map_size(Calls) ->
    Results;
drive(Calls, Results) ->
    receive
        {hb_beamr_import, Ref, #{args := [A, B]}} when is_map_key(Ref, Calls) ->
            ok = hb_beamr:reply(Ref, [A + B + A]),
            drive(Calls, Results);
        {hb_beamr_result, Ref, Result} when is_map_key(Ref, Calls) ->
            drive(Calls, Results#{maps:get(Ref, Calls) => Result})
    after 10000 -> error({missing, map_size(Calls) - map_size(Results)})
    end.

killed_caller_test() ->
    I = start(),
    Parent = self(),
    Caller = spawn(fun() ->
                       {ok, Ref} = hb_beamr:call_async(I, "wait_import", [], #{}),
                       {import, _} = next(Ref),
                       Parent ! in_import,
                       receive after infinity -> ok end
                   end),
    receive in_import -> ok end,
    Monitor = monitor(process, Caller),
    exit(Caller, kill),
    receive {'DOWN', Monitor, process, Caller, _} -> ok end,
    ?assertEqual({ok, [3]}, hb_beamr:call(I, "add", [1, 2])),
    {ok, Ref} = hb_beamr:call_async(I, "add", [2, 2], #{}),
    ?assertEqual({result, {ok, [4]}}, next(Ref)),
    hb_beamr:stop(I).

stopped_during_call_test() ->
    I = start(),
    {ok, Ref} = hb_beamr:call_async(I, "wait_import", [], #{}),
    {import, _} = next(Ref),
    hb_beamr:stop(I),
    ?assertEqual({result, {error, stopped}}, next(Ref)).

%% The seed's flow: a call, an import answered by import_response, the result.
seed_protocol_test() ->
    I = start(),
    Send = fun(Command) -> hb_beamr:wasm_send(I, {command, term_to_binary(Command)}) end,
    ?assertEqual(ok, Send({call, "call_host_add", [2, 3]})),
    ?assertEqual({import, "env", "host_add", [2, 3], "(ii)i"}, receive {import, _, _, _, _} = M -> M end),
    %% A call made while answering the import nests inside it.
    ok = Send({call, "call_host_add", [10, 20]}),
    {import, "env", "host_add", [10, 20], _} = receive {import, _, _, _, _} = M1 -> M1 end,
    ok = Send({import_response, [30]}),
    ?assertEqual({execution_result, [30]}, receive {execution_result, _} = R1 -> R1 end),
    ok = Send({import_response, [5]}),
    ?assertEqual({execution_result, [5]}, receive {execution_result, _} = R2 -> R2 end),
    ok = Send({call, "nope", []}),
    ?assertEqual({error, {not_found, "nope"}}, receive {error, _} = E -> E end),
    ?assertEqual({error, no_import_pending}, Send({import_response, [1]})),
    ?assertMatch({error, {badarg, _}}, hb_beamr:wasm_send(I, {command, <<"junk">>})),
    hb_beamr:stop(I),
    T = hb_beamr_test_util:start_fixture("table_call.wat"),
    ok = hb_beamr:wasm_send(T, {command, term_to_binary({indirect_call, 1, [2, 3]})}),
    ?assertEqual({execution_result, [5]}, receive {execution_result, _} = R3 -> R3 end),
    hb_beamr:stop(T).

info_test() ->
    Wat = hb_beamr_test_util:fixture("core.wat"),
    {ok, I, _, _} = hb_beamr:start(Wat),
    {ok, Info} = hb_beamr:info(I),
    Hash = list_to_binary([io_lib:format("~2.16.0b", [B]) || <<B>> <= crypto:hash(sha256, Wat)]),
    {ok, Size} = hb_beamr_io:size(I),
    ?assertMatch(#{module_hash := Hash, state := idle, calls := 0, memory_bytes := Size}, Info),
    ?assertEqual(Size div 65536, maps:get(memory_pages, Info)),
    {ok, Pages} = hb_beamr:call(I, "grow", [1]),
    {ok, [3], _} = hb_beamr:call(I, "add", [1, 2], fun hb_beamr:stub/3, #{}, #{gas => 1000}),
    {ok, Gas} = hb_beamr:gas_used(I),
    {ok, After} = hb_beamr:info(I),
    ?assertMatch(#{calls := 2, gas_used := Gas, memory_pages := _}, After),
    ?assertEqual(hd(Pages) + 1, maps:get(memory_pages, After)),
    {ok, Ref} = hb_beamr:call_async(I, "wait_import", [], #{}),
    {import, _} = next(Ref),
    ?assertMatch({ok, #{state := in_import}}, hb_beamr:info(I)),
    ok = hb_beamr:reply(Ref, [1]),
    {result, {ok, [1]}} = next(Ref),
    {ok, Loop} = hb_beamr:call_async(I, "loop_forever", [], #{}),
    ?assertEqual(running, hb_beamr_test_util:settle(fun() -> state(I) end, running)),
    hb_beamr:stop(I),
    ?assertEqual({result, {error, stopped}}, next(Loop)),
    ?assertEqual({error, stopped}, hb_beamr:info(I)),
    ?assertEqual({error, {badarg, {instance, x}}}, hb_beamr:info(x)).

state(I) ->
    {ok, #{state := State}} = hb_beamr:info(I),
    State.

info_cache_origin_test() ->
    %% A module this VM has not seen is compiled; the second start finds it in memory.
    Wat = io_lib:format("(module (func (export \"f\")) (global i64 (i64.const ~b)))",
                        [erlang:unique_integer([positive])]),
    {ok, A, _, _} = hb_beamr:start(Wat),
    {ok, B, _, _} = hb_beamr:start(Wat),
    ?assertMatch({ok, #{cached := false, origin := compiled, memory_bytes := 0}}, hb_beamr:info(A)),
    ?assertMatch({ok, #{cached := true, origin := memory}}, hb_beamr:info(B)),
    [hb_beamr:stop(X) || X <- [A, B]].
