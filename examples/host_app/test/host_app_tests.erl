-module(host_app_tests).
-include_lib("eunit/include/eunit.hrl").

nif_found_in_priv_dir_test() ->
    Priv = code:priv_dir(hb_beamr),
    ?assert(is_list(Priv)),
    ?assert(filelib:is_file(filename:join(Priv, "libhb_beamr_nif.so"))).

quad_calls_the_erlang_import_test() ->
    ?assertEqual({ok, 20, 2}, host_app:quad(5)),
    ?assertEqual({ok, -12, 2}, host_app:quad(-3)).

application_starts_test() ->
    ?assertMatch({ok, _}, application:ensure_all_started(host_app)),
    ?assertEqual(ok, application:stop(host_app)).
