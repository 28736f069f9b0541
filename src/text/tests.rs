use super::extract;

const BIG: usize = 1_000_000;

fn x(storage: &str) -> String {
    extract(storage, BIG)
}

#[test]
fn blocks_become_lines_and_inline_markup_disappears() {
    let s = "<h1>Deploy <em>guide</em></h1><p>Run the <strong>pipeline</strong>.</p>\
             <ul><li>step one</li><li><p>step two</p></li></ul><p>done<br/>really</p>";
    assert_eq!(
        x(s),
        "Deploy guide\nRun the pipeline.\nstep one\nstep two\ndone\nreally"
    );
}

#[test]
fn table_cells_and_rows_are_separated() {
    let s = "<table><tbody><tr><th>Service</th><th>Owner</th></tr>\
             <tr><td><p>billing</p></td><td><p>Team Kiwi</p></td></tr>\
             <tr><td>auth</td><td></td><td>note</td></tr></tbody></table><p>after</p>";
    assert_eq!(
        x(s),
        "Service | Owner\nbilling | Team Kiwi\nauth | note\nafter"
    );
}

#[test]
fn macro_bodies_are_kept_and_parameters_dropped() {
    let s = r#"<ac:structured-macro ac:name="info" ac:schema-version="1"><ac:parameter ac:name="title">SECRET-TITLE</ac:parameter><ac:rich-text-body><p>Read this first.</p></ac:rich-text-body></ac:structured-macro><ac:structured-macro ac:name="code"><ac:parameter ac:name="language">bash</ac:parameter><ac:plain-text-body><![CDATA[kubectl get pods
kubectl   rollout restart deploy/api]]></ac:plain-text-body></ac:structured-macro><p>end</p>"#;
    assert_eq!(
        x(s),
        "Read this first.\nkubectl get pods\nkubectl rollout restart deploy/api\nend"
    );
}

#[test]
fn tasks_placeholders_and_scripts_leave_only_their_text() {
    let s = "<ac:placeholder>Type here</ac:placeholder><ac:task-list><ac:task><ac:task-id>1</ac:task-id>\
             <ac:task-status>incomplete</ac:task-status><ac:task-body>rotate keys</ac:task-body></ac:task>\
             </ac:task-list><script>alert(1)</script><style>p{}</style><!-- hidden -->";
    assert_eq!(x(s), "rotate keys");
}

#[test]
fn links_show_their_body_or_the_target_title() {
    let s = r#"<p>See <ac:link><ri:page ri:content-title="Deploy &amp; Rollback" /></ac:link> and <ac:link><ri:page ri:content-title="Other" /><ac:plain-text-link-body><![CDATA[the runbook]]></ac:plain-text-link-body></ac:link> or <a href="https://x.invalid">this</a>.</p>"#;
    assert_eq!(x(s), "See Deploy & Rollback and the runbook or this.");
}

#[test]
fn entities_are_decoded() {
    let s = "<p>a&nbsp;b &amp; c &lt;d&gt; caf&eacute; na&#239;ve &#x1F680; &hellip;&mdash; &quot;q&apos;</p>";
    assert_eq!(x(s), "a b & c <d> café naïve 🚀 …— \"q'");
}

#[test]
fn unknown_entities_and_stray_ampersands_stay_as_written() {
    assert_eq!(
        x("<p>R&D &bogus; AT&T & co &#xD800; &#;</p>"),
        "R&D &bogus; AT&T & co"
    );
}

#[test]
fn whitespace_and_control_characters_collapse() {
    let s = "<p>  a \t\r\n b\u{0}\u{7}c\u{1b}  </p>\n\n<p>\u{a0}</p><p>d</p>";
    assert_eq!(x(s), "a b c\nd");
}

#[test]
fn any_script_and_emoji_survive() {
    let s = "<h2>Größenänderung</h2><p>デプロイ手順 👩‍💻 🚀</p><p>مرحبا עברית Ελληνικά</p>";
    assert_eq!(
        x(s),
        "Größenänderung\nデプロイ手順 👩‍💻 🚀\nمرحبا עברית Ελληνικά"
    );
}

#[test]
fn only_markup_yields_empty_text() {
    for s in [
        "",
        "   \n ",
        "<p></p><p><br/></p><hr/>",
        r#"<ac:structured-macro ac:name="toc"><ac:parameter ac:name="maxLevel">3</ac:parameter></ac:structured-macro>"#,
        r#"<p><ac:image><ri:attachment ri:filename="diagram.png" /></ac:image></p><table><tr><td></td></tr></table>"#,
        "<p>&nbsp;</p><!-- comment -->",
    ] {
        assert_eq!(x(s), "", "for {s:?}");
    }
}

#[test]
fn plain_text_without_markup_is_kept() {
    assert_eq!(x("just words, no tags"), "just words, no tags");
}

#[test]
fn malformed_input_keeps_the_text_it_can() {
    let cases = [
        ("<p>unclosed <b>bold", "unclosed bold"),
        ("<p>a<b>b</p>c</b>d", "ab\ncd"),
        ("</p>stray end</div>more", "stray end\nmore"),
        ("<p>a</p></p></p>b", "a\nb"),
        ("<p class='oops>kept</p><p>too</p>", "kept\ntoo"),
        ("<p>x</p><![CDATA[unclosed cdata", "x\nunclosed cdata"),
        ("<p>before</p><!-- unclosed comment <p>gone</p>", "before"),
        ("if a < b and c > d then", "if a < b and c > d then"),
        ("tail <", "tail <"),
        ("tail <p", "tail <p"),
        ("<>empty<>", "<>empty<>"),
        ("<p>a</ p>b", "a\nb"),
        ("<P>Upper</P><Td>x</tD>", "Upper\nx"),
    ];
    for (input, want) in cases {
        assert_eq!(x(input), want, "for {input:?}");
    }
}

#[test]
fn an_unclosed_skipped_element_ends_with_its_parent() {
    // the parameter is never closed; the macro's end tag closes it, and text after it survives
    let s = r#"<ac:structured-macro ac:name="info"><ac:parameter ac:name="title">t</ac:structured-macro><p>visible</p>"#;
    assert_eq!(x(s), "visible");
}

#[test]
fn garbage_never_panics_and_respects_the_budget() {
    // A tiny deterministic generator of nasty fragments.
    const PIECES: &[&str] = &[
        "<p>",
        "</p>",
        "<",
        ">",
        "&",
        "&amp;",
        "&#",
        ";",
        "<![CDATA[",
        "]]>",
        "<!--",
        "-->",
        "<ac:parameter>",
        "</ac:parameter>",
        "<td>",
        "<tr>",
        "</td>",
        "\"",
        "'",
        "=",
        " ",
        "\n",
        "é",
        "🚀",
        "日本",
        "\u{0}",
        "word",
        "<?",
        "?>",
        "<!DOCTYPE",
        "</",
        "/>",
        "<ac:link>",
        "<ri:page ri:content-title=\"T\"/>",
        "</ac:link>",
    ];
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..3000 {
        let mut s = String::new();
        for _ in 0..(seed % 40) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            s.push_str(PIECES[(seed % PIECES.len() as u64) as usize]);
        }
        for max in [0, 1, 3, 10, BIG] {
            let out = extract(&s, max);
            assert!(out.chars().count() <= max, "{s:?} at {max}: {out:?}");
            assert_eq!(out, out.trim(), "{s:?}");
            assert!(!out.contains("  "), "{s:?}: {out:?}");
        }
    }
}

#[test]
fn the_cap_is_a_prefix_cut_on_a_word_boundary() {
    let s = "<p>alpha beta gamma</p><p>delta epsilon</p>";
    let full = x(s);
    for max in 0..=full.chars().count() + 2 {
        let out = extract(s, max);
        assert!(out.chars().count() <= max, "{max}: {out:?}");
        assert!(full.starts_with(&out), "{max}: {out:?}");
        assert!(!out.ends_with(char::is_whitespace), "{max}: {out:?}");
    }
    assert_eq!(extract(s, 14), "alpha beta"); // not "alpha beta gam"
    assert_eq!(extract(s, 18), "alpha beta gamma");
    assert_eq!(extract(s, 0), "");
}

#[test]
fn the_cap_lands_on_a_char_boundary_in_any_script() {
    let s = "<p>日本語のテキストです🚀🚀🚀</p>";
    assert_eq!(extract(s, 5), "日本語のテ");
    assert_eq!(extract(s, 13), "日本語のテキストです🚀🚀🚀");
    let emoji = "<p>🚀🚀🚀 ünïcödé</p>";
    assert_eq!(extract(emoji, 2), "🚀🚀");
    assert_eq!(extract(emoji, 9), "🚀🚀🚀");
}

#[test]
fn a_cut_table_row_does_not_end_with_a_separator() {
    let s = "<table><tr><td>aaaa</td><td>bbbb</td></tr></table>";
    assert_eq!(extract(s, 6), "aaaa");
    assert_eq!(extract(s, 8), "aaaa"); // not "aaaa | b"
    assert_eq!(extract(s, 11), "aaaa | bbbb");
}

fn big_page(bytes: usize) -> String {
    let row = "<tr><td><p>svc-&amp;-name</p></td><td><strong>owner</strong>&nbsp;team</td></tr>";
    let mut s = String::from("<h1>Inventory</h1><table><tbody>");
    while s.len() < bytes {
        s.push_str(row);
        s.push_str(r#"<ac:structured-macro ac:name="code"><ac:parameter ac:name="language">sql</ac:parameter><ac:plain-text-body><![CDATA[SELECT 1;]]></ac:plain-text-body></ac:structured-macro>"#);
    }
    s.push_str("</tbody></table><p>THE END</p>");
    s
}

#[test]
fn a_200_kb_page_is_extracted_whole_and_capped() {
    let page = big_page(200 * 1024);
    let full = x(&page);
    assert!(
        full.starts_with("Inventory\nsvc-&-name | owner team\nSELECT 1;\nsvc-&-name"),
        "{}",
        &full[..80]
    );
    assert!(full.ends_with("SELECT 1;\nTHE END"));
    assert!(!full.contains('<') && !full.contains("sql"));
    let capped = extract(&page, 4000);
    assert!(capped.chars().count() <= 4000);
    assert!(full.starts_with(&capped));
}

#[test]
fn a_10_mb_page_stops_at_the_budget() {
    let page = big_page(10 * 1024 * 1024);
    let out = extract(&page, 2000);
    assert!(out.chars().count() <= 2000 && out.chars().count() > 1900);
    assert!(out.starts_with("Inventory\n"));
}
