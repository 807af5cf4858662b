%%% @doc Every relative link in README.md, CHANGELOG.md, docs/*.md and the fuzz corpus's
%%% README leads somewhere: to a file or directory of the repository and, when it names an
%%% anchor, to a heading of that file (anchors as GitHub derives them from headings).
-module(hb_beamr_links_tests).

-include_lib("eunit/include/eunit.hrl").

%% rebar3 and make run the suites from the project root.
markdown_files() ->
    ["README.md", "CHANGELOG.md", "test/fuzz_corpus/README.md" | lists:sort(filelib:wildcard("docs/*.md"))].

every_relative_link_resolves_test() ->
    Broken = [{File, Target, Why}
              || File <- markdown_files(),
                 Target <- links(read(File)),
                 not is_external(Target),
                 Why <- [check(File, Target)], Why =/= ok],
    ?assertEqual([], Broken).

%% The contributor documents the README points to exist and are linked from it.
readme_links_every_document_test() ->
    Docs = lists:sort(filelib:wildcard("docs/*.md")),
    ?assertNotEqual([], Docs),
    Linked = [T || T <- links(read("README.md")), not is_external(T)],
    ?assertEqual([], [D || D <- Docs, not lists:member(D, [file_part(T) || T <- Linked])]).

anchor_test() ->
    ?assertEqual(<<"cli-beamr">>, anchor(<<"CLI: `beamr`">>)),
    ?assertEqual(<<"asynchronous-calls-and-info1">>, anchor(<<"Asynchronous calls and `info/1`">>)),
    ?assertEqual(<<"4-wamr-page-layout">>, anchor(<<"4. WAMR page layout">>)),
    ?assertEqual(<<"busy-machine-make-bench-load">>, anchor(<<"Busy machine (`make bench-load`)">>)),
    ?assertEqual(<<"memory_limit-and-growth">>, anchor(<<"`memory_limit` and growth">>)).

check(File, Target) ->
    {Path, Anchor} = case string:split(Target, "#") of
                         [P, A] -> {P, A};
                         [P] -> {P, none}
                     end,
    Resolved = case Path of
                   "" -> File;
                   _ -> filename:join(filename:dirname(File), Path)
                end,
    case {filelib:is_file(Resolved), Anchor} of
        {false, _} -> no_such_file;
        {true, none} -> ok;
        {true, _} ->
            case lists:member(list_to_binary(Anchor), anchors(read(Resolved))) of
                true -> ok;
                false -> no_such_heading
            end
    end.

file_part(Target) ->
    hd(string:split(Target, "#")).

is_external(Target) ->
    lists:any(fun(Scheme) -> lists:prefix(Scheme, Target) end, ["http://", "https://", "mailto:"]).

read(File) ->
    {ok, Bin} = file:read_file(File),
    Bin.

%% The lines of a markdown file outside fenced code blocks.
prose_lines(Bin) ->
    Lines = binary:split(Bin, <<"\n">>, [global]),
    {Prose, _} = lists:foldl(fun(Line, {Acc, InFence}) ->
                                     case string:prefix(string:trim(Line, leading), "```") of
                                         nomatch when InFence -> {Acc, InFence};
                                         nomatch -> {[Line | Acc], InFence};
                                         _ -> {Acc, not InFence}
                                     end
                             end, {[], false}, Lines),
    lists:reverse(Prose).

%% Link targets of `[text](target)', leaving out code spans, where brackets are code.
links(Bin) ->
    [binary_to_list(T)
     || Line <- prose_lines(Bin),
        [_, T] <- match_all(re:replace(Line, "`[^`]*`", "", [global, {return, binary}]),
                            "\\[[^\\]]*\\]\\(([^)\\s]+)\\)")].

match_all(Subject, Regex) ->
    case re:run(Subject, Regex, [global, {capture, all, binary}]) of
        {match, Matches} -> Matches;
        nomatch -> []
    end.

%% GitHub's anchors: each heading's text lowercased, without punctuation other than `-'
%% and `_', spaces as `-'; a repeated anchor gets `-1', `-2', ...
anchors(Bin) ->
    Headings = [anchor(Text) || Line <- prose_lines(Bin),
                                [_, Text] <- match_all(Line, "^#{1,6}\\s+(.*?)\\s*$")],
    {Anchors, _} = lists:mapfoldl(fun(A, Seen) ->
                                          N = maps:get(A, Seen, 0),
                                          Name = case N of
                                                     0 -> A;
                                                     _ -> <<A/binary, "-", (integer_to_binary(N))/binary>>
                                                 end,
                                          {Name, Seen#{A => N + 1}}
                                  end, #{}, Headings),
    Anchors.

anchor(Heading) ->
    Lower = string:lowercase(unicode:characters_to_binary(Heading)),
    Kept = re:replace(Lower, "[^\\w\\- ]", "", [global, unicode, ucp, {return, binary}]),
    binary:replace(Kept, <<" ">>, <<"-">>, [global]).
