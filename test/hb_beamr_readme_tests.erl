%%% @doc The README's code, run as written: its first example (self-contained, inline WAT)
%%% and its API tour (on test/fixtures/tour.wat), so that the first code a new user reads is
%%% code that works.
-module(hb_beamr_readme_tests).

-include_lib("eunit/include/eunit.hrl").

%% The first Erlang block of the README's "First example" section, evaluated as it stands:
%% no variable may be bound beforehand, so it cannot lean on anything it does not show.
first_example_test() ->
    {ok, Readme} = file:read_file("README.md"),
    [_, Section] = binary:split(Readme, <<"\n## First example\n">>),
    [_, AfterFence] = binary:split(Section, <<"```erlang\n">>),
    [Code, _] = binary:split(AfterFence, <<"\n```">>),
    {ok, Tokens, _} = erl_scan:string(binary_to_list(Code)),
    {ok, Exprs} = erl_parse:parse_exprs(Tokens),
    {value, ok, _} = erl_eval:exprs(Exprs, erl_eval:new_bindings()).

api_tour_test() ->
    Wasm = hb_beamr_test_util:fixture("tour.wat"),
    Cache = filename:join("_build/test", "tour_cache"),
    %% --- from the README, between the markers of its API tour ---
    Opts = #{memory_limit => 256 bsl 20},
    {ok, I, _Imports, _Exports} = hb_beamr:start(Wasm, Opts),

    Fun = fun(Count, #{module := "env", func := "log", args := [Ptr]}, _Opts) ->
              {ok, Msg} = hb_beamr_io:read_string(I, Ptr),
              io:format("~s~n", [Msg]),
              {ok, [], Count + 1}
          end,
    {ok, [Result], Logged} = hb_beamr:call(I, "run", [42], Fun, 0, #{timeout => 5000, gas => 10000000}),
    {ok, GasUsed} = hb_beamr:gas_used(I),

    {ok, Ptr} = hb_beamr_io:write_string(I, <<"{\"Action\":\"Eval\"}">>),
    {ok, <<"{\"Action", _/binary>>} = hb_beamr_io:read(I, Ptr, 9),
    ok = hb_beamr_io:free(I, Ptr),

    {error, {trap, out_of_bounds, _}} = hb_beamr:call(I, "load", [16#7fffffff]),
    {error, {trap, timeout, _}, _} = hb_beamr:call(I, "spin", [], Fun, 0, #{timeout => 100}),

    {ok, Snapshot} = hb_beamr:snapshot(I),
    {ok, J, _, _} = hb_beamr:start(Wasm, Opts#{restore => Snapshot}),

    {ok, Artifact} = hb_beamr:compile(Wasm, #{cache_dir => Cache}),

    Raise = fun(S, #{func := "host_op"}, _) -> {import_exception, host_op_failed, S} end,
    {error, {trap, exception, host_op_failed}, _} = hb_beamr:call(I, "run_unguarded", [], Raise, s),

    {ok, Ref} = hb_beamr:call_async(J, "run", [7], #{}),
    receive {hb_beamr_import, Ref, #{func := "log"}} -> ok = hb_beamr:reply(Ref, []) end,
    receive {hb_beamr_result, Ref, {ok, _}} -> ok end,

    {ok, #{state := idle, memory_bytes := Bytes, calls := Calls}} = hb_beamr:info(I),
    ok = hb_beamr:stop(I),
    %% --- end of the tour ---
    ?assertEqual({84, 1}, {Result, Logged}),
    ?assert(GasUsed > 0),
    ?assertMatch({ok, _, _, _}, hb_beamr:start(Artifact, #{cache_dir => Cache})),
    ?assertEqual(65536, Bytes),
    ?assert(Calls >= 5),
    hb_beamr:stop(J).

%% The tour in the README is the one above, line for line.
readme_shows_the_tour_test() ->
    {ok, Readme} = file:read_file("README.md"),
    {ok, Test} = file:read_file("test/hb_beamr_readme_tests.erl"),
    [_, AfterStart] = binary:split(Test, <<"--- from the README, between the markers of its API tour ---\n">>),
    [Tour, _] = binary:split(AfterStart, <<"    %% --- end of the tour ---">>),
    Lines = [string:trim(L, trailing, ",.") || L0 <- binary:split(Tour, <<"\n">>, [global]),
                                              L <- [string:trim(L0)], L =/= <<>>],
    Missing = [L || L <- Lines, binary:match(Readme, L) =:= nomatch],
    ?assertEqual([], Missing).
