%%% @doc The core suite: calls, values, imports, memory, snapshots, errors, stop.
-module(hb_beamr_tests).

-include_lib("eunit/include/eunit.hrl").

-import(hb_beamr_test_util, [fixture/1, start_fixture/1, with_shared/2]).

core() -> start_fixture("core.wat").

%% Answers env.host_add with the sum and everything else with [0].
adder(State, #{func := "host_add", args := [A, B]}, _Opts) -> {ok, [A + B], State};
adder(State, _Request, _Opts) -> {ok, [0], State}.

%%% HyperBEAM's reference modules (MANIFEST.md)

fac_test_() ->
    [fun() ->
         with_shared(File, fun(Wasm) ->
             {ok, I, [], Exports} = hb_beamr:start(Wasm),
             ?assertEqual([{func, "fac", "(F)F"}], Exports),
             ?assertEqual({ok, [120.0]}, hb_beamr:call(I, "fac", [5.0])),
             ?assertEqual({ok, [6.0]}, hb_beamr:call(I, <<"fac">>, [3.0])),
             ?assertEqual({ok, [720.0]}, hb_beamr:call(I, "fac", [6.0])),
             hb_beamr:stop(I)
         end)
     end || File <- ["fixtures/hyperbeam/test.wasm", "fixtures/hyperbeam/test-64.wasm"]].

pow_calculator_test() ->
    with_shared("fixtures/hyperbeam/pow_calculator.wasm", fun(Wasm) ->
        {ok, I, Imports, _} = hb_beamr:start(Wasm),
        ?assert(lists:member({func, "my_lib", "mul", "(ii)i"}, Imports)),
        Mul = fun(Calls, #{module := "my_lib", func := "mul", args := [A, B]}, _) ->
                      {ok, [A * B], [[A, B] | Calls]}
              end,
        {ok, [32], Calls} = hb_beamr:call(I, <<"pow">>, [2, 5], Mul, []),
        ?assertEqual([[1, 2], [2, 2], [4, 2], [8, 2], [16, 2]], lists:reverse(Calls)),
        ?assertMatch({ok, [4], _}, hb_beamr:call(I, <<"pow">>, [2, 2], Mul, [])),
        ?assertEqual({ok, [0]}, hb_beamr:call(I, <<"pow">>, [2, 5])),
        ?assertEqual({ok, 18 * 65536}, hb_beamr_io:size(I)),
        hb_beamr:stop(I)
    end).

test_print_test() ->
    with_shared("fixtures/hyperbeam/test-print.wasm", fun(Wasm) ->
        {ok, I, [{func, "wasi_snapshot_preview1", "fd_write", "(iiii)i"}], _} = hb_beamr:start(Wasm),
        ?assertEqual({ok, 65536}, hb_beamr_io:size(I)),
        ?assertEqual({ok, <<"Hello, World!">>}, hb_beamr_io:read(I, 66, 13)),
        ?assertMatch({error, {out_of_bounds, 1000000, 13, 65536}}, hb_beamr_io:read(I, 1000000, 13)),
        ?assertEqual(ok, hb_beamr_io:write(I, 0, <<"Hello, World!">>)),
        ?assertEqual({ok, <<"Hello, World!">>}, hb_beamr_io:read(I, 0, 13)),
        ?assertMatch({error, {out_of_bounds, _, _, _}}, hb_beamr_io:write(I, 1000000, <<"Hello, World!">>)),
        hb_beamr:stop(I)
    end).

%%% Values

integer_ranges_test() ->
    I = core(),
    ?assertEqual({ok, [-1]}, hb_beamr:call(I, "add", [16#FFFFFFFF, 0])),
    ?assertEqual({ok, [-2147483648]}, hb_beamr:call(I, "add", [-2147483648, 0])),
    ?assertEqual({ok, [-2147483648]}, hb_beamr:call(I, "add", [2147483647, 1])),
    ?assertMatch({error, {badarg, {arg, 1, 16#100000000, "i"}}}, hb_beamr:call(I, "add", [16#100000000, 0])),
    ?assertMatch({error, {badarg, _}}, hb_beamr:call(I, "add", [-2147483649, 0])),
    ?assertEqual({ok, [-1]}, hb_beamr:call(I, "add64", [16#FFFFFFFFFFFFFFFF, 0])),
    ?assertEqual({ok, [-9223372036854775808]}, hb_beamr:call(I, "add64", [9223372036854775807, 1])),
    ?assertMatch({error, {badarg, _}}, hb_beamr:call(I, "add64", [1 bsl 64, 0])),
    ?assertMatch({error, {badarg, _}}, hb_beamr:call(I, "add64", [-(1 bsl 63) - 1, 0])),
    ?assertEqual({ok, [7, 3]}, hb_beamr:call(I, "pair", [3, 7])).

float_values_test() ->
    I = core(),
    ?assertEqual({ok, [1.5]}, hb_beamr:call(I, "addf", [1.0, 0.5])),
    %% f32 results are exact: 0.1 rounds to the nearest f32.
    {ok, [Tenth]} = hb_beamr:call(I, "addf", [0.1, 0]),
    ?assertEqual(<<Tenth:32/float>>, <<0.1:32/float>>),
    ?assertNotEqual(0.1, Tenth),
    ?assertEqual({ok, [6.0]}, hb_beamr:call(I, "mulF", [2, 3])),
    ?assertEqual({ok, [infinity]}, hb_beamr:call(I, "mulF", [infinity, 2.0])),
    ?assertEqual({ok, [neg_infinity]}, hb_beamr:call(I, "addf", [neg_infinity, 1.0])),
    ?assertEqual({ok, [nan]}, hb_beamr:call(I, "mulF", [infinity, 0.0])),
    ?assertEqual({ok, [nan]}, hb_beamr:call(I, "addf", [nan, 1.0])),
    ?assertMatch({error, {badarg, {arg, 2, "x", "F"}}}, hb_beamr:call(I, "mulF", [1.0, "x"])).

%%% Imports

import_fun_arities_test() ->
    I = core(),
    ?assertEqual({ok, [5], state}, hb_beamr:call(I, "call_host_add", [2, 3], fun adder/3, state)),
    Arity2 = fun(S, #{args := [A, B], options := #{factor := F}, func_sig := "(ii)i"}) ->
                     {ok, [(A + B) * F], S + 1}
             end,
    ?assertEqual({ok, [50], 1}, hb_beamr:call(I, "call_host_add", [2, 3], Arity2, 0, #{factor => 10})),
    %% An import returning nothing accepts the stub's [0].
    ?assertEqual({ok, []}, hb_beamr:call(I, "log_twice", [1])).

import_handler_uses_memory_and_nested_calls_test() ->
    I = core(),
    Handler =
        fun(State, #{func := "host_io", args := [Ptr], instance := Inst}, _) ->
                {ok, <<"hello">>} = hb_beamr_io:read(Inst, 16, 5),
                {ok, <<"hello">>} = hb_beamr_io:read_string(Inst, 16),
                ok = hb_beamr_io:write(Inst, Ptr, <<7>>),
                {ok, [Doubled]} = hb_beamr:call(Inst, "double", [21]),
                %% A nested call that itself reaches an import.
                {ok, [Sum], _} = hb_beamr:call(Inst, "call_host_add", [1, 2], fun adder/3, none),
                {ok, Str} = hb_beamr_io:write_string(Inst, <<"nested">>),
                {ok, <<"nested">>} = hb_beamr_io:read_string(Inst, Str),
                {ok, [Doubled + Sum], [Str | State]}
        end,
    {ok, [Result], [_Ptr]} = hb_beamr:call(I, "call_host_io", [100], Handler, []),
    ?assertEqual(42 + 3 + 7, Result),
    ?assertEqual({ok, <<7>>}, hb_beamr_io:read(I, 100, 1)).

many_instances_suspended_in_imports_test_() ->
    {timeout, 60, fun() ->
        N = 4 * erlang:system_info(dirty_cpu_schedulers),
        Instances = [core() || _ <- lists:seq(1, N)],
        Others = [core() || _ <- lists:seq(1, N)],
        Self = self(),
        Gate = make_ref(),
        %% Every handler waits until all N calls sit in their import, then calls another instance.
        Pids = [spawn_link(fun() ->
                    Handler = fun(S, #{func := "block"}, _) ->
                                      Self ! {Gate, in_import},
                                      receive {Gate, go} -> ok end,
                                      {ok, [R]} = hb_beamr:call(Other, "double", [K]),
                                      {ok, [R], S}
                              end,
                    Self ! {Gate, done, K, hb_beamr:call(I, "wait_import", [], Handler, none)}
                end) || {K, I, Other} <- lists:zip3(lists:seq(1, N), Instances, Others)],
        [receive {Gate, in_import} -> ok after 10000 -> error(not_all_in_import) end || _ <- Pids],
        [P ! {Gate, go} || P <- Pids],
        Results = lists:sort([receive {Gate, done, K, R} -> {K, R} after 10000 -> error(timeout) end
                              || _ <- Pids]),
        ?assertEqual([{K, {ok, [2 * K], none}} || K <- lists:seq(1, N)], Results),
        [hb_beamr:stop(X) || X <- Instances ++ Others]
    end}.

killed_import_handler_test() ->
    I = core(),
    Self = self(),
    Caller = spawn(fun() ->
        hb_beamr:call(I, "wait_import", [],
                      fun(S, _, _) -> Self ! in_import, receive never -> {ok, [0], S} end end, none)
    end),
    receive in_import -> ok after 5000 -> error(no_import) end,
    exit(Caller, kill),
    ?assertEqual({ok, [5]}, hb_beamr:call(I, "add", [2, 3])),
    ?assertEqual({ok, [9], x}, hb_beamr:call(I, "call_host_add", [4, 5], fun adder/3, x)).

concurrent_callers_fifo_test() ->
    I = core(),
    Self = self(),
    Pids = [spawn_link(fun() ->
                Rs = [hb_beamr:call(I, "add", [K, J]) || J <- lists:seq(1, 200)],
                Self ! {self(), Rs}
            end) || K <- lists:seq(1, 8)],
    lists:foreach(
      fun({K, P}) ->
              receive {P, Rs} -> ?assertEqual([{ok, [K + J]} || J <- lists:seq(1, 200)], Rs) end
      end, lists:zip(lists:seq(1, 8), Pids)).

%%% Errors

import_failures_test() ->
    I = core(),
    Raises = fun(_, _, _) -> error(boom) end,
    ?assertEqual({error, {import_failed, "env", "host_add", {error, boom}}, s0},
                 hb_beamr:call(I, "call_host_add", [1, 2], Raises, s0)),
    BadResults = fun(S, _, _) -> {ok, [not_a_number], S} end,
    ?assertEqual({error, {import_failed, "env", "host_add", {error, {bad_import_results, [not_a_number]}}}, s1},
                 hb_beamr:call(I, "call_host_add", [1, 2], BadResults, s1)),
    WrongCount = fun(S, _, _) -> {ok, [1, 2], S} end,
    ?assertMatch({error, {import_failed, "env", "host_add", {error, {bad_import_results, [1, 2]}}}, s2},
                 hb_beamr:call(I, "call_host_add", [1, 2], WrongCount, s2)),
    BadReturn = fun(_, _, _) -> whatever end,
    ?assertEqual({error, {import_failed, "env", "host_add", {error, {bad_import_return, whatever}}}, s3},
                 hb_beamr:call(I, "call_host_add", [1, 2], BadReturn, s3)),
    Throws = fun(_, _, _) -> throw(oops) end,
    ?assertEqual({error, {import_failed, "env", "host_add", {throw, oops}}, s4},
                 hb_beamr:call(I, "call_host_add", [1, 2], Throws, s4)),
    ?assertEqual({ok, [3], s5}, hb_beamr:call(I, "call_host_add", [1, 2], fun adder/3, s5)).

%% A WAMR AOT image cannot run here; the error says to start the .wasm it came from.
wamr_aot_image_test() ->
    Image = <<0, "aot", 3, 0, 0, 0, "machine code for WAMR">>,
    [begin
         {error, {invalid_module, Message}} = hb_beamr:start(Image, Mode),
         ?assertNotEqual(nomatch, binary:match(Message, <<"WAMR AOT image">>)),
         ?assertNotEqual(nomatch, binary:match(Message, <<"start the .wasm">>))
     end || Mode <- [aot, wasm, #{}]].

bad_inputs_test() ->
    ?assertMatch({error, {invalid_module, _}}, hb_beamr:start(<<"definitely not wasm">>)),
    Wasm = fixture_binary(),
    ?assertMatch({error, {invalid_module, _}}, hb_beamr:start(binary:part(Wasm, 0, byte_size(Wasm) - 5))),
    ?assertMatch({error, {invalid_module, _}}, hb_beamr:start(<<0, "asm", 1, 0, 0, 0, 255>>)),
    ?assertMatch({error, {badarg, _}}, hb_beamr:start(not_a_binary)),
    ?assertMatch({error, {badarg, _}}, hb_beamr:start(Wasm, #{wamr_compat => maybe})),
    I = core(),
    ?assertEqual({error, {not_found, "nope"}}, hb_beamr:call(I, "nope", [])),
    ?assertEqual({error, {not_found, <<"nope">>}}, hb_beamr:call(I, <<"nope">>, [])),
    ?assertEqual({error, {badarg, {arity, 2, 1}}}, hb_beamr:call(I, "add", [1])),
    ?assertMatch({error, {badarg, {arg, 1, foo, "i"}}}, hb_beamr:call(I, "add", [foo, 1])),
    ?assertMatch({error, {badarg, {arg, 2, 1.5, "i"}}}, hb_beamr:call(I, "add", [1, 1.5])),
    ?assertMatch({error, {badarg, _}}, hb_beamr:call(I, "add", not_a_list)),
    ?assertEqual({error, {badarg, {func, {x}}}}, hb_beamr:call(I, {x}, [])),
    ?assertMatch({error, {badarg, {instance, _}}}, hb_beamr:call(not_a_pid, "add", [1, 2])),
    ?assertMatch({error, {badarg, _}}, hb_beamr_io:read(I, -1, 4)),
    ?assertMatch({error, {badarg, _}}, hb_beamr_io:write(I, 0, "not a binary")),
    ?assertMatch({error, {badarg, _}}, hb_beamr_io:write_string(I, [not_iodata])),
    ?assertMatch({error, {badarg, _}}, hb_beamr_io:malloc(I, not_a_size)),
    ?assertMatch({error, {badarg, _}}, hb_beamr_io:read_string(I, -5)),
    ?assertMatch({error, {out_of_bounds, _, _, _}}, hb_beamr_io:read(I, 16#FFFFFFFFFFFFFFFF, 2)),
    ?assertMatch({error, {out_of_bounds, _, _, _}}, hb_beamr_io:read(I, 0, 1 bsl 40)),
    ok = hb_beamr:stop(I),
    ok = hb_beamr:stop(I),
    ?assertEqual({error, stopped}, hb_beamr:call(I, "add", [1, 2])),
    ?assertEqual({error, stopped}, hb_beamr_io:size(I)),
    ?assertEqual({error, stopped}, hb_beamr:serialize(I)),
    ?assertNot(is_process_alive(I)).

%% A binary module: (func (export "add") (param i32 i32) (result i32)).
fixture_binary() ->
    <<0, "asm", 1, 0, 0, 0,
      1, 7, 1, 16#60, 2, 16#7f, 16#7f, 1, 16#7f,
      3, 2, 1, 0,
      7, 7, 1, 3, "add", 0, 0,
      10, 9, 1, 7, 0, 16#20, 0, 16#20, 1, 16#6a, 16#0b>>.

start_functions_test() ->
    ?assertMatch({error, {trap, unreachable, _}}, hb_beamr:start(fixture("start_traps.wat"))),
    {ok, I, [{func, "env", "seed", "()i"}], _} = hb_beamr:start(fixture("start_imports.wat")),
    ?assertEqual({ok, [0]}, hb_beamr:call(I, "seeded", [])),
    ?assertMatch({error, {invalid_module, _}}, hb_beamr:start(fixture("imports_memory.wat"))).

binary_module_test() ->
    {ok, I, [], [{func, "add", "(ii)i"}]} = hb_beamr:start(fixture_binary()),
    ?assertEqual({ok, [3]}, hb_beamr:call(I, "add", [1, 2])),
    ?assertEqual({ok, 0}, hb_beamr_io:size(I)),
    hb_beamr:stop(I).

traps_test() ->
    I = core(),
    ?assertMatch({error, {trap, unreachable, _}}, hb_beamr:call(I, "unreachable", [])),
    ?assertMatch({error, {trap, out_of_bounds, _}}, hb_beamr:call(I, "load", [70000])),
    ?assertMatch({error, {trap, division_by_zero, _}}, hb_beamr:call(I, "div", [1, 0])),
    ?assertMatch({error, {trap, integer_overflow, _}}, hb_beamr:call(I, "div", [-2147483648, -1])),
    ?assertMatch({error, {trap, integer_overflow, _}}, hb_beamr:call(I, "trunc", [1.0e20])),
    ?assertMatch({error, {trap, bad_conversion, _}}, hb_beamr:call(I, "trunc", [nan])),
    ?assertMatch({error, {trap, stack_overflow, _}}, hb_beamr:call(I, "recurse", [0])),
    {error, {trap, _, Message}} = hb_beamr:call(I, "unreachable", []),
    ?assert(is_binary(Message)),
    ?assertEqual({ok, [5]}, hb_beamr:call(I, "add", [2, 3])).

%%% Memory and snapshots

memory_and_strings_test() ->
    I = core(),
    ?assertEqual({ok, 65536}, hb_beamr_io:size(I)),
    ?assertEqual({ok, <<"hello">>}, hb_beamr_io:read_string(I, 16)),
    {ok, Ptr} = hb_beamr_io:write_string(I, [<<"abc">>, "def"]),
    ?assertEqual({ok, <<"abcdef">>}, hb_beamr_io:read_string(I, Ptr)),
    {ok, Ptr2} = hb_beamr_io:malloc(I, 10),
    ?assertEqual(Ptr + 7, Ptr2),
    ?assertEqual(ok, hb_beamr_io:free(I, Ptr2)),
    ok = hb_beamr_io:write(I, 65535, <<1>>),
    ?assertMatch({error, {out_of_bounds, 65535, unterminated, 65536}}, hb_beamr_io:read_string(I, 65535)),
    ?assertEqual({ok, [1]}, hb_beamr:call(I, "grow", [1])),
    ?assertEqual({ok, 131072}, hb_beamr_io:size(I)).

serialize_restore_test() ->
    I = core(),
    {ok, [1]} = hb_beamr:call(I, "incr", []),
    ok = hb_beamr_io:write(I, 5000, <<"persisted">>),
    {ok, [1]} = hb_beamr:call(I, "grow", [1]),
    {ok, Snapshot} = hb_beamr:serialize(I),
    ?assertEqual(2 * 65536, byte_size(Snapshot)),
    J = core(),
    ?assertEqual(ok, hb_beamr:deserialize(J, Snapshot)),
    ?assertEqual({ok, 2 * 65536}, hb_beamr_io:size(J)),
    ?assertEqual({ok, <<"persisted">>}, hb_beamr_io:read(J, 5000, 9)),
    ?assertEqual({ok, Snapshot}, hb_beamr:serialize(J)),
    %% Larger than the memory's maximum (4 pages).
    ?assertMatch({error, {too_large, _, _}}, hb_beamr:deserialize(J, binary:copy(<<0>>, 5 * 65536))).

%%% Stopping

stop_during_infinite_loop_test() ->
    I = core(),
    Self = self(),
    spawn(fun() -> Self ! {looped, hb_beamr:call(I, "loop_forever", [])} end),
    timer:sleep(100),
    {Micros, ok} = timer:tc(fun() -> hb_beamr:stop(I) end),
    ?assert(Micros < 100000),
    receive {looped, Result} -> ?assertEqual({error, stopped}, Result)
    after 5000 -> error(caller_hangs)
    end.

stop_during_import_test() ->
    I = core(),
    Self = self(),
    spawn(fun() ->
        Handler = fun(S, _, _) -> Self ! in_import, timer:sleep(200), {ok, [1], S} end,
        Self ! {waited, hb_beamr:call(I, "wait_import", [], Handler, none)}
    end),
    receive in_import -> ok end,
    ok = hb_beamr:stop(I),
    receive {waited, Result} -> ?assertEqual({error, stopped, none}, Result)
    after 5000 -> error(caller_hangs)
    end.

queued_calls_get_stopped_test() ->
    I = core(),
    Self = self(),
    spawn(fun() -> Self ! {first, hb_beamr:call(I, "loop_forever", [])} end),
    timer:sleep(50),
    spawn(fun() -> Self ! {second, hb_beamr:call(I, "add", [1, 2])} end),
    timer:sleep(50),
    hb_beamr:stop(I),
    ?assertEqual({error, stopped}, receive {first, R1} -> R1 after 5000 -> timeout end),
    ?assertEqual({error, stopped}, receive {second, R2} -> R2 after 5000 -> timeout end).

owner_death_stops_instance_test() ->
    I = core(),
    exit(I, kill),
    timer:sleep(50),
    ?assertEqual({error, stopped}, hb_beamr:call(I, "add", [1, 2])).

start_stop_cycles_do_not_leak_test_() ->
    {timeout, 120, fun() ->
        Wasm = fixture("core.wat"),
        Cycle = fun() ->
                    {ok, I, _, _} = hb_beamr:start(Wasm),
                    {ok, [3]} = hb_beamr:call(I, "add", [1, 2]),
                    ok = hb_beamr:stop(I)
                end,
        [Cycle() || _ <- lists:seq(1, 300)],
        timer:sleep(200),
        Before = resident_kb(),
        [Cycle() || _ <- lists:seq(1, 3000)],
        timer:sleep(500),
        After = resident_kb(),
        ?assert(After - Before < 64 * 1024)
    end}.

resident_kb() ->
    {ok, Status} = file:read_file("/proc/self/status"),
    [_, Rest] = binary:split(Status, <<"VmRSS:">>),
    [Kb | _] = string:lexemes(Rest, " \t\n"),
    binary_to_integer(Kb).
