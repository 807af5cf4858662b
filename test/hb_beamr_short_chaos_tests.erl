%%% @doc A short fixed-seed run of the API chaos run (`make chaos', `hb_beamr_chaos') in a
%%% child VM of its own, whose threads, processes and RSS are the baseline it checks.
-module(hb_beamr_short_chaos_tests).

-include_lib("eunit/include/eunit.hrl").

-define(SEED, 20261204).
-define(MILLIS, 30000).

short_chaos_run_test_() ->
    {timeout, 120, fun() ->
        Paths = lists:usort([filename:dirname(code:which(M)) || M <- [hb_beamr, hb_beamr_chaos, hb_beamr_test_util]]),
        {ok, Child, _} = peer:start(#{connection => standard_io, args => ["-pa" | Paths]}),
        try peer:call(Child, hb_beamr_chaos, run, [#{seed => ?SEED, millis => ?MILLIS}], 5 * ?MILLIS) of
            Result ->
                io:format(user, "~n  ", []),
                hb_beamr_chaos:report(?SEED, Result),
                ?assertEqual([], maps:get(failures, Result))
        after
            peer:stop(Child)
        end
    end}.
