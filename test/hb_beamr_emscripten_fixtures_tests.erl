%%% @doc Our own C and C++ programs (test/fixtures/emscripten/, MANIFEST.md there), built
%%% by Emscripten 3.1.6 with JavaScript-style and wasm exceptions and longjmp, wasm32 and
%%% memory64: every build gives the outputs node gives with Emscripten's own JavaScript.
-module(hb_beamr_emscripten_fixtures_tests).

-include_lib("eunit/include/eunit.hrl").

-define(EXCEPTIONS, ["exceptions.js-eh.wasm", "exceptions.js-eh.bigint.wasm", "exceptions.js-eh.m64.wasm",
                     "exceptions.wasm-eh.wasm", "exceptions.wasm-eh.m64.wasm"]).

%% Scenario -> what `run' returns in every build (MANIFEST.md).
exceptions_expected() ->
    [{0, <<"no throw">>}, {1, <<"int 37703">>}, {2, <<"runtime_error boom">>},
     {3, <<"Base& b=3 derived=30">>}, {4, <<"Second& second=22 first=11 both=33">>},
     {5, <<"catch-all">>}, {6, <<"rethrown int 6 inner 1">>}, {7, <<"outer 1 then inner">>},
     {8, <<"Foo* 88">>}, {9, <<"rethrow_exception saved">>},
     {10, <<"signatures checksum 8fc30ee1c869f2c2 thrown 9">>},
     {11, <<"caught 11 after 3 destructors">>}, {12, <<"uncaught_exceptions in dtor 1, in handler 0">>},
     {15, <<"loop 100000">>}].

%% The imports every build has besides the runtime's: a memory copy, a heap that does not
%% grow, abort; and longjmp.c's host_reenter, which calls back `jump_back' and lets the
%% longjmp it makes go on through this import as an exception.
env(S, #{func := "emscripten_memcpy_big", args := [To, From, Len], instance := I}) ->
    {ok, Bytes} = hb_beamr_io:read(I, From, Len),
    ok = hb_beamr_io:write(I, To, Bytes),
    {ok, [To], S};
env(S, #{func := "emscripten_resize_heap"}) ->
    {ok, [0], S};
env(S, #{func := "host_reenter", args := [V], instance := I}) ->
    {error, {trap, exception, Reason}, S1} = hb_beamr:call(I, "jump_back", [V], fun env/2, S),
    {import_exception, Reason, S1 + 1}.

run(I, Scenario) ->
    hb_beamr_test_util:string_result(I, hb_beamr:call(I, "run", [Scenario], fun env/2, 0)).

start(File) ->
    {ok, I, _, _} = hb_beamr:start(hb_beamr_test_util:fixture("emscripten/" ++ File)),
    I.

exceptions_test_() ->
    {timeout, 120, [{File, fun() -> exceptions(File) end} || File <- ?EXCEPTIONS]}.

exceptions(File) ->
    I = start(File),
    [?assertEqual({Scenario, Expected}, {Scenario, run(I, Scenario)}) || {Scenario, Expected} <- exceptions_expected()],
    %% Uncaught, then the instance catches again.
    ?assertEqual({trap, exception}, run(I, 13)),
    ?assertEqual(<<"int 37703">>, run(I, 1)),
    %% Throws 10,000 deep, caught and rethrown at every level. JavaScript style: each level
    %% is an invoke_*, past the nesting bound (node passes it only with a larger stack).
    %% Wasm exceptions: wasmer keeps a backtrace of the whole stack with each exception
    %% until the call ends (50 million frames here: 14 s and 2.3 GB before the bound), so
    %% the throws are refused past 4 Mi frames.
    ?assertEqual({trap, stack_overflow}, run(I, 14)),
    ?assertEqual(<<"runtime_error boom">>, run(I, 2)),
    ok = hb_beamr:stop(I).

%% An uncaught std::exception reports its what(); other types their (mangled) name. The
%% same with wasm exceptions: libc++abi's carry the address of their header.
uncaught_message_test() ->
    [begin
         I = start(File),
         ?assertEqual({error, {trap, exception, <<"uncaught C++ exception of type i">>}, 0},
                      hb_beamr:call(I, "run", [13], fun env/2, 0)),
         ?assertEqual({error, {trap, exception, <<"nobody catches this">>}, 0},
                      hb_beamr:call(I, "run", [16], fun env/2, 0)),
         ok = hb_beamr:stop(I)
     end || File <- ?EXCEPTIONS].

longjmp_test_() ->
    {timeout, 60, [{File, fun() -> longjmp(File) end} || File <- ["longjmp.js-sjlj.wasm", "longjmp.wasm-sjlj.wasm"]]}.

longjmp(File) ->
    I = start(File),
    ?assertEqual(<<"last_level: 5, ret: 42, local_state: 7">>, run(I, 0)),
    ?assertEqual(<<"inner got 5, outer got 52">>, run(I, 2)),
    ?assertEqual(<<"sjlj loop 100000">>, run(I, 4)),
    %% A longjmp to a frame that has returned escapes every setjmp.
    ?assertEqual({trap, exception}, run(I, 3)),
    ?assertEqual(<<"last_level: 5, ret: 42, local_state: 7">>, run(I, 0)),
    ok = hb_beamr:stop(I).

%% longjmp(env, 0): 3.1.6 gets it wrong in both modes (MANIFEST.md); hb_beamr as node.
longjmp_zero_test() ->
    ?assertEqual(<<"level returned normally">>, run(start("longjmp.js-sjlj.wasm"), 1)),
    ?assertEqual(<<"setjmp returned 0 again">>, run(start("longjmp.wasm-sjlj.wasm"), 1)).

%% A longjmp out of a nested call made by an import handler, back into the frame that
%% called the import: the handler raises it on as `{import_exception, Reason}', which the
%% invoke_* around the import catches. With wasm longjmp the import is called inside a
%% wasm `try', which no host exception enters: the call ends with it instead.
longjmp_through_import_handler_test() ->
    I = start("longjmp.js-sjlj.wasm"),
    ?assertMatch({ok, [_], 1}, hb_beamr:call(I, "run", [5], fun env/2, 0)),
    ?assertEqual(<<"back through host: ret 56, state 2">>, run(I, 5)),
    ok = hb_beamr:stop(I),
    J = start("longjmp.wasm-sjlj.wasm"),
    ?assertMatch({error, {trap, exception, _}, 1}, hb_beamr:call(J, "run", [5], fun env/2, 0)),
    ok = hb_beamr:stop(J).

%% Throws cost the same gas on every instance (and node): their stack frames, which
%% depend on the host, are bounded but not charged.
throws_cost_the_same_gas_test_() ->
    {timeout, 60, fun() ->
        [begin
             Gas = [begin
                        I = start(File),
                        <<"loop 100000">> = run(I, 15),
                        {ok, Used} = hb_beamr:gas_used(I),
                        ok = hb_beamr:stop(I),
                        Used
                    end || _ <- [1, 2]],
             ?assertMatch([Used, Used], Gas, File)
         end || File <- ["exceptions.js-eh.wasm", "exceptions.wasm-eh.wasm"]]
    end}.
