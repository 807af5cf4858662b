%%% @doc Emscripten's invoke_* imports are answered natively, never by the import fun.
-module(hb_beamr_emscripten_tests).

-include_lib("eunit/include/eunit.hrl").

never(_, Request, _) -> error({import_fun_called, Request}).

call(I, Func, Args) ->
    hb_beamr:call(I, Func, Args, fun never/3, s).

invoke_test() ->
    {ok, I, Imports, _} = hb_beamr:start(hb_beamr_test_util:fixture("emscripten.wat")),
    ?assertEqual([{func, "env", "invoke_ii", "(ii)i"}, {func, "env", "invoke_v", "(i)"}], Imports),
    ?assertEqual({ok, [42], s}, call(I, "call_inc", [41])),
    %% The exception reaches setThrew and the stack pointer is restored.
    ?assertEqual({ok, [1, 5000], s}, call(I, "call_throws", [])),
    ?assertMatch({error, {trap, unreachable, _}, s}, call(I, "call_traps", [])),
    ?assertMatch({error, {trap, uninitialized_element, _}, s}, call(I, "call_null_entry", [])),
    ?assertEqual({ok, [2], s}, call(I, "call_inc", [1])),
    hb_beamr:stop(I).

memory64_invoke_test() ->
    {ok, I, Imports, _} = hb_beamr:start(hb_beamr_test_util:fixture("emscripten64.wat")),
    ?assertEqual([{func, "env", "invoke_vjj", "(III)"}, {func, "env", "invoke_jj", "(II)I"},
                  {func, "env", "invoke_ii", "(ii)i"}], Imports),
    %% i64 table indices, and an i32 one in the same module.
    ?assertEqual({ok, [], s}, call(I, "store_via", [1, 64, 77])),
    ?assertEqual({ok, [77]}, hb_beamr:call(I, "load", [64])),
    ?assertEqual({ok, [42], s}, call(I, "double_via", [2, 21])),
    ?assertEqual({ok, [42], s}, call(I, "double32_via", [4, 21])),
    %% As in WAMR, only the low 32 bits of the index count.
    ?assertEqual({ok, [10], s}, call(I, "double_via", [(1 bsl 32) + 2, 5])),
    %% The exception reaches setThrew as (1 :: i64, 0 :: i32); the stack pointer is restored.
    ?assertEqual({ok, [1, 0, 5000], s}, call(I, "throw_via", [])),
    %% Null and out-of-range entries trap as an indirect call would.
    ?assertMatch({error, {trap, uninitialized_element, _}, s}, call(I, "store_via", [0, 0, 0])),
    ?assertMatch({error, {trap, table_out_of_bounds, _}, s}, call(I, "store_via", [5, 0, 0])),
    ?assertMatch({error, {trap, table_out_of_bounds, _}, s}, call(I, "double32_via", [-1, 0])),
    ?assertEqual({ok, [77]}, hb_beamr:call(I, "load", [64])),
    hb_beamr:stop(I).
