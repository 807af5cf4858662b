%%% @doc Every exported function and type of the library has documentation (or is
%%% marked `@private'), as `rebar3 edoc' shows it: the modules' EDoc in EEP-48 chunks.
-module(hb_beamr_docs_tests).

-include_lib("eunit/include/eunit.hrl").

-define(MODULES, [hb_beamr, hb_beamr_io, hb_beamr_nif, hb_beamr_cli, hb_beamr_owner, hb_beamr_async, hb_beamr_seed,
                  hb_beamr_aos]).

every_export_and_type_is_documented_test_() ->
    {timeout, 60, fun() ->
        %% rebar3 and make run the suites from the project root.
        Dir = "_build/test/edoc_chunks",
        Files = ["lib/" ++ atom_to_list(M) ++ ".erl" || M <- ?MODULES],
        ok = edoc:files(Files, [{doclet, edoc_doclet_chunks}, {layout, edoc_layout_chunks},
                                {dir, Dir}, {preprocess, true}, {includes, ["include"]}]),
        Undocumented = lists:append([undocumented(M, filename:join([Dir, "chunks", atom_to_list(M) ++ ".chunk"]))
                                     || M <- ?MODULES]),
        ?assertEqual([], Undocumented)
    end}.

undocumented(Module, Chunk) ->
    {ok, Bin} = file:read_file(Chunk),
    {docs_v1, _, _, _, ModuleDoc, _, Entries} = binary_to_term(Bin),
    Exports = Module:module_info(exports) -- [{module_info, 0}, {module_info, 1}],
    [{Module, module} || not is_map(ModuleDoc) orelse map_size(ModuleDoc) =:= 0]
        ++ [{Module, Kind, Name, Arity}
            || {{Kind, Name, Arity}, _, _, Doc, _} <- Entries,
               Kind =:= type orelse lists:member({Name, Arity}, Exports),
               Doc =:= none orelse Doc =:= #{}].
