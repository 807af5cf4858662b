%%% @doc `deterministic => true': canonical NaNs, threads refused, identical runs give
%%% byte-identical memory (test/fixtures/deterministic.wat).
-module(hb_beamr_deterministic_tests).

-include_lib("eunit/include/eunit.hrl").

-define(CANONICAL_F32, 16#7fc00000).
-define(CANONICAL_F64, 16#7ff8000000000000).

start(Opts) ->
    {ok, I, _, _} = hb_beamr:start(hb_beamr_test_util:fixture("deterministic.wat"), Opts),
    I.

nan_bits(I) ->
    ok = hb_beamr_io:write(I, 0, <<0:96/unit:8>>),
    {ok, []} = hb_beamr:call(I, "nans", []),
    {ok, <<F32s:28/binary, _:4/binary, F64s:56/binary>>} = hb_beamr_io:read(I, 0, 88),
    {[X || <<X:32/little>> <= F32s], [X || <<X:64/little>> <= F64s]}.

is_nan32(X) -> X band 16#7f800000 =:= 16#7f800000 andalso X band 16#7fffff =/= 0.

nans_are_canonical_test() ->
    I = start(#{deterministic => true}),
    {F32s, F64s} = nan_bits(I),
    ?assertEqual(lists:duplicate(7, ?CANONICAL_F32), F32s),
    ?assertEqual(lists:duplicate(7, ?CANONICAL_F64), F64s),
    %% The same module without deterministic mode is compiled by the other engine (the
    %% caches are keyed by it): NaNs come out as the CPU makes them.
    J = start(#{}),
    {DefaultF32s, _} = nan_bits(J),
    ?assert(lists:all(fun is_nan32/1, DefaultF32s)),
    case erlang:system_info(system_architecture) of
        "x86_64" ++ _ -> ?assertEqual(16#ffc00000, hd(DefaultF32s)); % x86's "default NaN"
        _ -> ok
    end,
    %% Artifacts keep the mode.
    {ok, A} = hb_beamr:compile(hb_beamr_test_util:fixture("deterministic.wat"), #{deterministic => true}),
    {ok, K, _, _} = hb_beamr:start(A, #{}),
    ?assertEqual({F32s, F64s}, nan_bits(K)),
    [hb_beamr:stop(X) || X <- [I, J, K]].

identical_calls_give_identical_memory_test() ->
    Run = fun() ->
        I = start(#{deterministic => true}),
        Results = [hb_beamr:call(I, "mix", [X, K, 4000]) || {X, K} <- [{2.5, 3}, {1000.0, 0}, {nan, 7}]],
        {ok, Memory} = hb_beamr:serialize(I),
        {ok, Gas} = hb_beamr:gas_used(I),
        hb_beamr:stop(I),
        {Results, Gas, crypto_hash(Memory)}
    end,
    {Results, Gas, Memory} = Run(),
    ?assertEqual({Results, Gas, Memory}, Run()),
    ?assertMatch([{ok, [_]}, {ok, [_]}, {ok, [nan]}], Results).

crypto_hash(Bin) -> erlang:md5(Bin).

threads_are_refused_test() ->
    Shared = <<"(module (memory 1 1 shared))">>,
    Atomic = <<"(module (memory 1) (func (export \"f\") (result i32) (i32.atomic.load (i32.const 0))))">>,
    [begin
         ?assertMatch({error, {invalid_module, _}}, hb_beamr:start(Wat, #{deterministic => true})),
         ?assertMatch({error, {invalid_module, _}}, hb_beamr:compile(Wat, #{deterministic => true})),
         {ok, I, _, _} = hb_beamr:start(Wat, #{deterministic => false}),
         hb_beamr:stop(I)
     end || Wat <- [Shared, Atomic]],
    {error, {invalid_module, Msg}} = hb_beamr:start(Shared, #{deterministic => true}),
    ?assertNotEqual(nomatch, binary:match(iolist_to_binary(Msg), <<"deterministic">>)),
    Relaxed = <<"(module (func (param v128 v128) (result v128)
                   (f32x4.relaxed_min (local.get 0) (local.get 1))))">>,
    ?assertMatch({error, {invalid_module, _}}, hb_beamr:start(Relaxed, #{deterministic => true})).

bad_option_test() ->
    Wat = hb_beamr_test_util:fixture("deterministic.wat"),
    ?assertEqual({error, {badarg, {options, {deterministic, 1}}}}, hb_beamr:start(Wat, #{deterministic => 1})).
