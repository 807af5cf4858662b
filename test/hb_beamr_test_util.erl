%%% @doc Helpers shared by the EUnit suites: fixtures and the HyperBEAM reference modules.
-module(hb_beamr_test_util).

-export([fixture/1, start_fixture/1, shared_file/1, with_shared/2]).

%% @doc The text of one of the project's own fixtures under test/fixtures/.
-spec fixture(string()) -> binary().
fixture(Name) ->
    {ok, Bin} = file:read_file(filename:join([root(), "test", "fixtures", Name])),
    Bin.

-spec start_fixture(string()) -> pid().
start_fixture(Name) ->
    {ok, I, _Imports, _Exports} = hb_beamr:start(fixture(Name)),
    I.

%% @doc A file of ../shared (HyperBEAM's modules, spec tests), `undefined' if absent.
-spec shared_file(string()) -> binary() | undefined.
shared_file(Path) ->
    case file:read_file(filename:join(shared_dir(), Path)) of
        {ok, Bin} -> Bin;
        {error, enoent} -> undefined
    end.

%% @doc Runs `Fun(Bytes)' on a HyperBEAM fixture from ../shared (CI has it; a missing
%% file fails the test rather than skipping it).
-spec with_shared(string(), fun((binary()) -> term())) -> term().
with_shared(Path, Fun) ->
    case shared_file(Path) of
        undefined -> error({missing_shared_fixture, filename:join(shared_dir(), Path)});
        Bin -> Fun(Bin)
    end.

shared_dir() ->
    case os:getenv("HB_BEAMR_SHARED") of
        false -> filename:join(root(), "../shared");
        Dir -> Dir
    end.

%% rebar3 and make run the suites from the project root.
root() ->
    {ok, Dir} = file:get_cwd(),
    Dir.
