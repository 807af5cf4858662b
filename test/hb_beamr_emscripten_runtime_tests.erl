%%% @doc Emscripten's JavaScript-style exceptions and setjmp/longjmp: answered natively
%%% (the default), or by the import fun with `{import_exception, Reason}' answers
%%% (`emscripten => imports'). HyperBEAM's newer test modules (../shared/fixtures/
%%% hyperbeam-aot2, MANIFEST.md there says what each must return), the newer AOS builds,
%%% and the runtime misused (test/fixtures/emscripten_throw.wat).
-module(hb_beamr_emscripten_runtime_tests).

-include_lib("eunit/include/eunit.hrl").

-import(hb_beamr_test_util, [fixture/1, with_shared/2]).
-import(hb_beamr_aos, [output/1]).

-define(AOT2, "fixtures/hyperbeam-aot2/").

%% WASI and Emscripten's memory-growth notice get zeros; any other import reaching the
%% import fun fails the call (natively answered imports never do).
wasi_only(State, #{module := "wasi_snapshot_preview1"}) -> {ok, [0], State};
wasi_only(State, #{func := "emscripten_notify_memory_growth"}) -> {ok, [], State};
wasi_only(_State, Request) -> error({unexpected_import, Request}).

%% `handle(Msg, Env)' as HyperBEAM's tests call these modules: the result string, or
%% `{trap, Kind}'.
handle(I, Env, ImportFun, State) ->
    {ok, MsgPtr} = hb_beamr_io:write_string(I, <<"msg">>),
    {ok, EnvPtr} = hb_beamr_io:write_string(I, Env),
    hb_beamr_test_util:string_result(I, hb_beamr:call(I, "handle", [MsgPtr, EnvPtr], ImportFun, State)).

%% Each `{Env, Expected}' of `File' in one instance, natively and through import answers.
handles(File, Cases) ->
    with_shared(?AOT2 ++ File, fun(Wasm) ->
        {ok, Native, _, _} = hb_beamr:start(Wasm),
        {ok, Answered, _, _} = hb_beamr:start(Wasm, #{emscripten => imports}),
        Js = fun hb_beamr_emscripten_js:import/3,
        [begin
             ?assertEqual({Env, Expected}, {Env, handle(Native, Env, fun wasi_only/2, s)}),
             ?assertEqual({Env, Expected}, {Env, handle(Answered, Env, Js, hb_beamr_emscripten_js:new())})
         end || {Env, Expected} <- Cases],
        ok = hb_beamr:stop(Native),
        ok = hb_beamr:stop(Answered)
    end).

try_test() ->
    %% A rethrow of nothing, an int, a std::runtime_error; then a wild pointer traps and
    %% the instance still catches.
    Cases = [{<<"0">>, <<"Initial">>}, {<<"1">>, <<"Catch">>}, {<<"2">>, <<"Catch">>},
             {<<"3">>, <<"Catch">>}, {<<"4">>, {trap, out_of_bounds}},
             {<<"3">>, <<"Catch">>}],
    handles("try.wasm", Cases),
    handles("try-64.wasm", Cases).

try_stack_test() ->
    handles("try_stack.wasm", [{<<"0">>, <<"Done">>}]).

jmp_test() ->
    Expected = <<"last_level: 5, ret: 42, local_state: 7">>,
    handles("jmp.wasm", [{<<"1">>, Expected}, {<<"1">>, Expected}]).

fib_test() ->
    handles("fib.wasm", [{<<"1">>, <<"Fibonacci index 10 is 55\n">>}]),
    handles("fib-64.wasm", [{<<"1">>, <<"Fibonacci index 10 is 55\n">>}]).

format_and_parse_test() ->
    with_shared(?AOT2 ++ "format.wasm", fun(Wasm) ->
        {ok, I, _, _} = hb_beamr:start(Wasm),
        Format = fun(Func, Value) ->
            {ok, [Ptr], _} = hb_beamr:call(I, Func, [Value], fun wasi_only/2, s),
            {ok, String} = hb_beamr_io:read_string(I, Ptr),
            String
        end,
        ?assertEqual(<<"-42">>, Format("format_i32", -42)),
        ?assertEqual(<<"4294967295">>, Format("format_u32", -1)),
        ?assertEqual(<<"-9223372036854775808">>, Format("format_i64", -9223372036854775808)),
        ?assertEqual(<<"18446744073709551615">>, Format("format_u64", -1)),
        ok = hb_beamr:stop(I)
    end),
    with_shared(?AOT2 ++ "parse.wasm", fun(Wasm) ->
        {ok, I, _, _} = hb_beamr:start(Wasm),
        Parse = fun(Func, Text) ->
            {ok, Ptr} = hb_beamr_io:write_string(I, Text),
            {ok, [Value], _} = hb_beamr:call(I, Func, [Ptr], fun wasi_only/2, s),
            Value
        end,
        ?assertEqual(-42, Parse("parse_i32", <<"-42">>)),
        ?assertEqual(-9223372036854775808, Parse("parse_i64", <<"-9223372036854775808">>)),
        ?assertEqual(infinity, Parse("parse_f64", <<"inf">>)),
        ok = hb_beamr:stop(I)
    end).

invalid_test() ->
    with_shared(?AOT2 ++ "invalid.wasm", fun(Wasm) ->
        ?assertMatch({error, {invalid_module, _}}, hb_beamr:start(Wasm))
    end).

%% The runtime's imports of a module: those inspect lists, and answered natively.
inspect_test() ->
    with_shared(?AOT2 ++ "try.wasm", fun(Wasm) ->
        {ok, #{emscripten := Names}} = hb_beamr_nif:inspect(Wasm, #{}),
        ?assertEqual(lists:sort(["invoke_v", "invoke_iii", "invoke_viii", "invoke_ii", "__cxa_throw",
                                 "__cxa_rethrow", "__cxa_find_matching_catch_2", "__cxa_find_matching_catch_3",
                                 "__cxa_begin_catch", "__cxa_end_catch", "__resumeException"]),
                     lists:sort(Names))
    end),
    ?assertMatch({error, {badarg, _}}, hb_beamr:start(fixture("emscripten_throw.wat"), #{emscripten => bogus})).

%% `{import_exception, Reason}' from the import fun, in its three forms.
raise(_State, #{func := "raise", args := [1]}) -> {import_exception, {oops, 1}};
raise(State, #{func := "raise", args := [2]}) -> {import_exception, {oops, 2}, State + 1};
raise(_State, #{func := "raise", args := [3]}) -> throw({import_exception, {oops, 3}});
raise(_State, #{func := "raise", args := [4]}) -> {import_exception, lists:seq(1, 100000)};
raise(State, #{func := "raise", args := [_]}) -> {ok, [], State};
raise(State, #{func := "_emscripten_throw_longjmp"}) -> {ok, [], State}.

import_exception_test() ->
    {ok, I, _, _} = hb_beamr:start(fixture("emscripten_throw.wat")),
    %% Caught by invoke_vi: __THREW__ set, the stack pointer restored.
    [?assertEqual({ok, [1, 5000], 10}, hb_beamr:call(I, "guarded", [1, N], fun raise/2, 10)) || N <- [1, 3]],
    ?assertEqual({ok, [1, 5000], 11}, hb_beamr:call(I, "guarded", [1, 2], fun raise/2, 10)),
    ?assertEqual({ok, [0, 1], 10}, hb_beamr:call(I, "guarded", [1, 0], fun raise/2, 10)),
    %% Uncaught: the call's error carries the reason and the state.
    ?assertEqual({error, {trap, exception, {oops, 1}}, 10}, hb_beamr:call(I, "unguarded", [1], fun raise/2, 10)),
    ?assertEqual({error, {trap, exception, {oops, 2}}, 11}, hb_beamr:call(I, "unguarded", [2], fun raise/2, 10)),
    ?assertEqual({error, {trap, exception, {oops, 3}}, 10}, hb_beamr:call(I, "unguarded", [3], fun raise/2, 10)),
    ?assertEqual({error, {trap, exception, {too_large, 65536}}, 10}, hb_beamr:call(I, "unguarded", [4], fun raise/2, 10)),
    %% The same through call_async/4 and reply/2.
    {ok, Ref} = hb_beamr:call_async(I, "unguarded", [0], #{}),
    receive {hb_beamr_import, Ref, #{func := "raise"}} -> ok = hb_beamr:reply(Ref, {import_exception, async}) end,
    receive {hb_beamr_result, Ref, Result} -> ?assertEqual({error, {trap, exception, async}}, Result) end,
    ?assertEqual({ok, [0, 1], 10}, hb_beamr:call(I, "guarded", [1, 0], fun raise/2, 10)),
    ok = hb_beamr:stop(I).

longjmp_and_nesting_test_() ->
    {timeout, 60, fun() ->
        {ok, I, _, _} = hb_beamr:start(fixture("emscripten_throw.wat")),
        ?assertEqual({ok, [1, 5000], 0}, hb_beamr:call(I, "guarded", [2, 0], fun raise/2, 0)),
        ?assertEqual({error, {trap, exception, <<"longjmp to a setjmp that is no longer on the stack">>}, 0},
                     hb_beamr:call(I, "longjmp", [], fun raise/2, 0)),
        %% A throw 100 invokes deep is caught by the innermost; 10,000 deep the nesting
        %% bound ends the call, and the instance serves the next one.
        ?assertEqual({ok, [1, 5000], 0}, hb_beamr:call(I, "guarded", [3, 100], fun raise/2, 0)),
        ?assertMatch({error, {trap, stack_overflow, _}, 0}, hb_beamr:call(I, "guarded", [3, 10000], fun raise/2, 0)),
        ?assertEqual({ok, [1, 5000], 0}, hb_beamr:call(I, "guarded", [2, 0], fun raise/2, 0)),
        ok = hb_beamr:stop(I)
    end}.

misuse_test() ->
    {ok, I, _, _} = hb_beamr:start(fixture("emscripten_throw.wat")),
    %% A setThrew that traps ends the call with its trap.
    {ok, []} = hb_beamr:call(I, "trap_in_set_threw", [1]),
    ?assertMatch({error, {trap, unreachable, _}, 0}, hb_beamr:call(I, "guarded", [2, 0], fun raise/2, 0)),
    {ok, []} = hb_beamr:call(I, "trap_in_set_threw", [0]),
    ?assertEqual({error, {trap, other, <<"__cxa_end_catch with no exception caught">>}}, hb_beamr:call(I, "end_catch", [])),
    ?assertMatch({error, {trap, out_of_bounds, _}}, hb_beamr:call(I, "begin_catch", [4])),
    ?assertMatch({error, {trap, out_of_bounds, _}}, hb_beamr:call(I, "begin_catch", [-16])),
    ?assertEqual({error, {trap, other, <<"more than 100000 exceptions caught at once">>}},
                 hb_beamr:call(I, "begin_catch_times", [1024, 100001])),
    %% Each call starts with nothing caught.
    ?assertEqual({ok, []}, hb_beamr:call(I, "begin_catch_times", [1024, 10])),
    ?assertEqual({ok, [1024]}, hb_beamr:call(I, "begin_catch", [1024])),
    ?assertEqual({ok, [1, 5000], 0}, hb_beamr:call(I, "guarded", [2, 0], fun raise/2, 0)),
    ok = hb_beamr:stop(I).

wrong_signature_test() ->
    Wasm = fixture("emscripten_bad_throw.wat"),
    {error, {invalid_module, Message}} = hb_beamr:start(Wasm),
    ?assertMatch({match, _}, re:run(Message, "env\\.__cxa_throw.*emscripten => imports")),
    %% The import fun answers it when asked to.
    {ok, I, _, _} = hb_beamr:start(Wasm, #{emscripten => imports}),
    ?assertEqual({ok, [5], s}, hb_beamr:call(I, "throw", [], fun(S, #{func := "__cxa_throw"}) -> {ok, [5], S} end, s)),
    ok = hb_beamr:stop(I).

%% The newer AOS builds (Lua's errors are longjmps) answer Evals through the Erlang API,
%% natively and with the longjmps raised by the import fun (`emscripten => imports').
new_aos_test_() ->
    {timeout, 300, [{File ++ " " ++ atom_to_list(Mode), fun() -> new_aos(File, Mode) end}
                    || File <- ["aos-ll.wasm", "aos-dock.wasm", "aos-new.wasm"], Mode <- [native, imports]]}.

new_aos(File, Mode) ->
    with_shared(?AOT2 ++ File, fun(Wasm) ->
        {ok, I, _, _} = hb_beamr:start(Wasm, #{emscripten => Mode}),
        {ok, [], _} = hb_beamr:call(I, "__wasm_call_ctors", [], fun aos_import/3, hb_beamr_emscripten_js:new(), #{}),
        ?assertEqual({ok, <<"2">>}, output(eval(I, <<"return 1+1">>))),
        Caught = eval(I, <<"local ok, e = pcall(function() error('x') end) return tostring(ok) .. ':' .. e:sub(-1)">>),
        ?assertEqual({ok, <<"false:x">>}, output(Caught)),
        Uncaught = eval(I, <<"error('boom')">>),
        ?assertMatch({match, _}, re:run(Uncaught, "\"Error\":\"[^}]*boom")),
        Loop = eval(I, <<"local s = 0 for i = 1, 1000000 do s = s + i end return s">>),
        ?assertEqual({ok, <<"500000500000">>}, output(Loop)),
        ok = hb_beamr:stop(I)
    end).

eval(I, Code) ->
    {ok, MsgPtr, EnvPtr} = hb_beamr_aos:write_message(I, Code),
    {ok, [Ptr], _} = hb_beamr:call(I, "handle", [MsgPtr, EnvPtr], fun aos_import/3, hb_beamr_emscripten_js:new(), #{}),
    {ok, Json} = hb_beamr_io:read_string(I, Ptr),
    Json.

%% The AOS driver's WASI and Emscripten answers; Emscripten's runtime as an import fun
%% for what reaches the fun (`emscripten => imports').
aos_import(State, #{func := "_emscripten_throw_longjmp"} = Request, Opts) ->
    hb_beamr_emscripten_js:import(State, Request, Opts);
aos_import(State, Request, _Opts) ->
    {_Provider, Results, _Output} = hb_beamr_aos:answer(Request),
    {ok, Results, State}.

%% Stops racing calls that throw all the time, from many processes: every caller gets its
%% result or `stopped', and no executor thread is left behind.
stop_racing_throws_test_() ->
    {timeout, 120, fun() ->
        Wasm = fixture("emscripten/exceptions.js-eh.wasm"),
        Env = fun(S, #{func := "emscripten_resize_heap"}) -> {ok, [0], S} end,
        Before = hb_beamr_test_util:executor_threads(),
        [begin
             {ok, I, _, _} = hb_beamr:start(Wasm),
             Self = self(),
             Callers = [spawn(fun() -> Self ! {done, self(), hb_beamr:call(I, "run", [15], Env, 0)} end)
                        || _ <- lists:seq(1, 20)],
             timer:sleep(rand:uniform(30)),
             ok = hb_beamr:stop(I),
             [receive
                  {done, Caller, Result} ->
                      ?assert(element(1, Result) =:= ok orelse Result =:= {error, stopped, 0}, Result)
              end || Caller <- Callers]
         end || _ <- lists:seq(1, 5)],
        ?assertEqual(Before, hb_beamr_test_util:settle(fun hb_beamr_test_util:executor_threads/0, Before))
    end}.

%% The process answering an import dies before its `{import_exception, Reason}': the call
%% ends with `caller_died', and the instance serves the next call.
caller_killed_in_an_import_test() ->
    {ok, I, _, _} = hb_beamr:start(fixture("emscripten_throw.wat")),
    Self = self(),
    Slow = fun(S, #{func := "raise"}) -> Self ! {in_import, self()}, timer:sleep(infinity), {import_exception, late, S} end,
    Caller = spawn(fun() -> hb_beamr:call(I, "guarded", [1, 1], Slow, 0) end),
    receive {in_import, Caller} -> exit(Caller, kill) end,
    %% Caught again; the stack pointer is where the trapped call left it (a trap unwinds
    %% no invoke_*, and wasm state is never rolled back).
    ?assertEqual({ok, [1, 1], 10}, hb_beamr:call(I, "guarded", [1, 1], fun raise/2, 10)),
    ok = hb_beamr:stop(I).

%% HyperBEAM's older C++ test module (../shared/fixtures/hyperbeam-history/test-ex.wasm,
%% memory64, JavaScript-style exceptions): main throws a std::runtime_error and catches
%% it. Its WASI output is collected (the AOS driver's import fun); `proc_exit' ends the
%% call as an exception carrying the status.
history_test_ex_test() ->
    with_shared("fixtures/hyperbeam-history/test-ex.wasm", fun(Wasm) ->
        {ok, I, _, _} = hb_beamr:start(Wasm),
        Wasi = fun(Out, #{func := "proc_exit", args := [Status]}, _Opts) ->
                       {import_exception, {exit, Status}, Out};
                  (Out, Request, Opts) ->
                       hb_beamr_aos:import(Out, Request, Opts)
               end,
        {ok, []} = hb_beamr:call(I, "emscripten_stack_init", []),
        {error, {trap, exception, {exit, 0}}, Out} = hb_beamr:call(I, "_start", [], Wasi, []),
        ?assertEqual(<<"enter main\nenter try\ncatching runtime_error\nexit main\n">>, iolist_to_binary(Out)),
        ok = hb_beamr:stop(I)
    end).
