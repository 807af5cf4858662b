%%% @doc Properties of the value codec and memory access (PropEr, from Debian).
-module(hb_beamr_prop_tests).
-export([prop_i32_round_trip/1, prop_i64_round_trip/1, prop_out_of_range_integers_are_badarg/1,
         prop_f64_round_trip/1, prop_f32_is_exact/1, prop_memory_round_trip/1]).

-include_lib("proper/include/proper.hrl").
-include_lib("eunit/include/eunit.hrl").

-define(NUMTESTS, 500).

signed(X, Bits) ->
    <<S:Bits/signed>> = <<X:Bits>>,
    S.

prop_i32_round_trip(I) ->
    ?FORALL(X, integer(-(1 bsl 31), (1 bsl 32) - 1),
            hb_beamr:call(I, "add", [X, 0]) =:= {ok, [signed(X, 32)]}).

prop_i64_round_trip(I) ->
    ?FORALL(X, integer(-(1 bsl 63), (1 bsl 64) - 1),
            hb_beamr:call(I, "add64", [X, 0]) =:= {ok, [signed(X, 64)]}).

prop_out_of_range_integers_are_badarg(I) ->
    ?FORALL(X, oneof([integer(1 bsl 32, 1 bsl 70), integer(-(1 bsl 70), -(1 bsl 31) - 1)]),
            element(1, element(2, hb_beamr:call(I, "add", [X, 0]))) =:= badarg).

prop_f64_round_trip(I) ->
    ?FORALL(X, float(), hb_beamr:call(I, "mulF", [X, 1.0]) =:= {ok, [X]}).

prop_f32_is_exact(I) ->
    ?FORALL(X, float(-1.0e30, 1.0e30),
            begin
                {ok, [Y]} = hb_beamr:call(I, "addf", [X, 0.0]),
                <<Y:32/float>> =:= <<X:32/float>>
            end).

prop_memory_round_trip(I) ->
    ?FORALL({Offset, Data}, {integer(0, 65536 - 64), binary()},
            begin
                Fits = Offset + byte_size(Data) =< 65536,
                case hb_beamr_io:write(I, Offset, Data) of
                    ok -> Fits andalso hb_beamr_io:read(I, Offset, byte_size(Data)) =:= {ok, Data};
                    {error, {out_of_bounds, Offset, _, 65536}} -> not Fits
                end
            end).

%% PropEr's progress dots would drown the EUnit report; counterexamples still print.
print_but_progress(".", []) -> ok;
print_but_progress(Format, Args) -> io:format(user, Format, Args).

properties_test_() ->
    {setup,
     fun() -> hb_beamr_test_util:start_fixture("core.wat") end,
     fun hb_beamr:stop/1,
     fun(I) ->
         [{atom_to_list(Name), {timeout, 60, ?_assert(proper:quickcheck(?MODULE:Name(I),
                                                                         [{numtests, ?NUMTESTS}, {on_output, fun print_but_progress/2}]))}}
          || Name <- [prop_i32_round_trip, prop_i64_round_trip, prop_out_of_range_integers_are_badarg,
                      prop_f64_round_trip, prop_f32_is_exact, prop_memory_round_trip]]
     end}.
