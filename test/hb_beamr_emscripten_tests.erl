%%% @doc Emscripten's invoke_* imports are answered natively, never by the import fun.
-module(hb_beamr_emscripten_tests).

-include_lib("eunit/include/eunit.hrl").

never(_, Request, _) -> error({import_fun_called, Request}).

invoke_test() ->
    {ok, I, Imports, _} = hb_beamr:start(hb_beamr_test_util:fixture("emscripten.wat")),
    ?assertEqual([{func, "env", "invoke_ii", "(ii)i"}, {func, "env", "invoke_v", "(i)"}], Imports),
    ?assertEqual({ok, [42], s}, hb_beamr:call(I, "call_inc", [41], fun never/3, s)),
    %% The exception reaches setThrew and the stack pointer is restored.
    ?assertEqual({ok, [1, 5000], s}, hb_beamr:call(I, "call_throws", [], fun never/3, s)),
    ?assertMatch({error, {trap, unreachable, _}, s}, hb_beamr:call(I, "call_traps", [], fun never/3, s)),
    ?assertMatch({error, {trap, other, _}, s}, hb_beamr:call(I, "call_null_entry", [], fun never/3, s)),
    ?assertEqual({ok, [2], s}, hb_beamr:call(I, "call_inc", [1], fun never/3, s)),
    hb_beamr:stop(I).
