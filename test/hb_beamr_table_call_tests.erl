%%% @doc Integer function references: `hb_beamr:call(I, N, Args)' calls entry N of table 0,
%%% checked against that entry's type when the call runs.
-module(hb_beamr_table_call_tests).

-include_lib("eunit/include/eunit.hrl").

start() ->
    hb_beamr_test_util:start_fixture("table_call.wat").

results_as_for_a_named_export_test() ->
    I = start(),
    ?assertEqual({ok, [5]}, hb_beamr:call(I, 1, [2, 3])),
    ?assertEqual(hb_beamr:call(I, "add", [2, 3]), hb_beamr:call(I, 1, [2, 3])),
    ?assertEqual({ok, [2.5, -1]}, hb_beamr:call(I, 2, [16#FFFFFFFFFFFFFFFF, 2.5])),
    ?assertMatch({error, {trap, unreachable, _}}, hb_beamr:call(I, 4, [])),
    hb_beamr:stop(I).

imports_and_nested_calls_test() ->
    I = start(),
    %% Entry 3 calls host_add, whose handler calls entry 1 of the same instance.
    Add = fun(N, #{func := "host_add", args := [A, B]}, _Opts) ->
              {ok, [Sum], _} = hb_beamr:call(I, 1, [A, B], fun hb_beamr:stub/3, ok),
              {ok, [Sum], N + 1}
          end,
    ?assertEqual({ok, [14], 1}, hb_beamr:call(I, 3, [7], Add, 0)),
    hb_beamr:stop(I).

null_and_out_of_range_entries_trap_test() ->
    I = start(),
    ?assertMatch({error, {trap, uninitialized_element, _}}, hb_beamr:call(I, 0, [])),
    ?assertMatch({error, {trap, uninitialized_element, _}}, hb_beamr:call(I, 5, [1, 2])),
    [?assertMatch({error, {trap, table_out_of_bounds, _}}, hb_beamr:call(I, N, []))
     || N <- [6, 16#FFFFFFFF, 1 bsl 32, 1 bsl 70, -1]],
    %% A module without a table has no entries at all.
    {ok, J, _, _} = hb_beamr:start(<<"(module (func (export \"f\")))">>),
    ?assertMatch({error, {trap, table_out_of_bounds, _}}, hb_beamr:call(J, 0, [])),
    ?assertEqual({ok, [3]}, hb_beamr:call(I, 1, [1, 2])),
    [hb_beamr:stop(X) || X <- [I, J]].

arguments_are_checked_against_the_entry_test() ->
    I = start(),
    ?assertEqual({error, {badarg, {arity, 2, 1}}}, hb_beamr:call(I, 1, [1])),
    ?assertEqual({error, {badarg, {arg, 2, 1.5, "i"}}}, hb_beamr:call(I, 1, [1, 1.5])),
    ?assertEqual({error, {badarg, {arg, 1, 1 bsl 64, "I"}}}, hb_beamr:call(I, 2, [1 bsl 64, 1.0])),
    ?assertEqual({error, {badarg, {arg, 1, {x}, "i"}}, s}, hb_beamr:call(I, 1, [{x}, 1], fun hb_beamr:stub/3, s)),
    ?assertMatch({error, {badarg, _}}, hb_beamr:call(I, 1, not_a_list)),
    %% The type is the entry's when the call runs.
    ?assertEqual({ok, []}, hb_beamr:call(I, "set_pair", [5])),
    ?assertEqual({ok, [1.0, 7]}, hb_beamr:call(I, 5, [7, 1])),
    ?assertEqual({error, {badarg, {arity, 2, 3}}}, hb_beamr:call(I, 5, [1, 2, 3])),
    ?assertEqual({ok, [3]}, hb_beamr:call(I, 1, [1, 2])),
    hb_beamr:stop(I).
