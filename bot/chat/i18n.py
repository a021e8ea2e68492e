"""What users read, in one catalogue: the chat's UI strings in English, Japanese and Chinese.

`text(lang, key, **values)` looks a string up (falling back to English for a language or key
the table lacks); `pick_lang(code)` turns "ja-JP", "zh-Hans-CN" or an Accept-Language header
into one of `LANGS` (or None). Series titles come from `series.json`'s `titles`, not from here
(`title_in` in bot/chat/answer.py).
"""

from __future__ import annotations

LANGS = ("en", "ja", "zh")
DEFAULT = "en"
LANG_NAMES = {"en": "English", "ja": "日本語", "zh": "中文"}

EN: dict[str, str] = {
    "status.match": "Found it",
    "status.match_two_times": "Found it — two moments of this episode fit",
    "status.match_rival": "Probably this — another scene fits almost as well",
    "status.unsure": "Not sure — here are my best guesses",
    "status.no_match": "No match — I couldn't find this in the library",
    "status.no_match_guesses": "No match — nothing in the library fits well",
    "confidence": "Confidence {pct}",
    "confidence.help": "Confidence: how likely the top answer is right",
    "episode": "Episode {n}",
    "season": "S{n}",
    "movie": "Movie",
    "opening": "Opening of {title}",
    "ending": "Ending of {title}",
    "oped": "Opening or ending of {title}",
    "at": "{where} @ {time}",
    "or_at": "{a} or {b}",
    "also": "Could also be: {line}",
    "top5": "Other candidates",
    "closest": "Closest scenes (none fits well)",
    "show_closest": "Show closest scenes",
    "no_match.hint": "Try a cleaner screenshot (no crop, no captions) or another frame of "
                     "the scene.",
    "characters": "Characters",
    "looks_like": "Looks like",
    "feedback.hint": "Right? Tap ✅ or ❌ — or the number of the right answer.",
    "synopsis": "Synopsis",
    "lang.set": "Language: English. Series titles: {titles}.",
    "lang.usage": "Use /lang en, /lang ja or /lang zh (and optionally a title language, "
                  "e.g. /lang en ja).",
    "lang.title_default": "as in the library",
    "unknown": "{n} unknown",

    # -- what went wrong (user_error_text in bot/chat/texts.py) --
    "error.generic": "Sorry, something went wrong while looking that up. Please try again later.",
    "error.config": "Something went wrong on the server. Please try again later.",
    "error.index": "The library index is not ready yet. Ask the operator to run `anirec index`.",
    "error.no_episodes": "No episodes are indexed yet. Ask the operator to run `anirec index` "
                         "on the library.",
    "error.busy": "I'm busy right now, please try again in {s} s.",
    "error.rate": "You're sending pictures too fast; try again in {s} s.",
    "error.invalid": "I could not read that file as an image, GIF or short clip.",
    "error.unsupported": "That file type is not supported. Send a picture, GIF, sticker or "
                         "short clip.",
    "error.not_media": "That file isn't a picture or a clip. Send a screenshot, GIF, sticker "
                       "or short video ({formats}).",
    "error.lottie": "That's an animated (Lottie) sticker; I can only read picture stickers. "
                    "Send a screenshot of it instead.",
    "error.too_large": "That file is too large.",
    "error.too_large_size": "That file is too large ({size}); I can read files up to {limit}.",
    "error.too_long": "That clip is too long ({s} s); I read clips up to {max} s.",
    "error.not_found": "That answer is no longer known.",
    "error.download": "I couldn't download that picture. Try again, or attach the file itself.",
    "error.download_slow": "That file took too long to download.",
    "error.link_slow": "That link took too long to download.",
    "error.link_scheme": "I only follow http(s) links to pictures.",
    "error.link_login": "I don't follow links with a user name or password in them.",
    "error.link_host": "I only download pictures from the chat platform's own servers here; "
                       "attach the file itself instead.",
    "error.link_address": "I can't fetch pictures from that address.",
    "error.link_redirects": "That link redirects too many times.",
    "error.link_status": "That link answered with an error ({status}).",
    "error.link_type": "That link is not a picture or a clip ({type}).",
    "error.not_http": "That isn't an http(s) link to a picture.",
    "error.answer_too_old": "That answer is too old; send the picture again.",
    "error.owner_only": "That command is for the bot's operator.",
    "reloaded": "Reloaded: {what}",
    # -- votes --
    "vote.withdrawn": "Your vote was taken back.",
    "vote.correct": "Thanks! Marked as right ✅",
    "vote.wrong": "Thanks! Marked as wrong ❌ (tap a number if one of the others is right)",
    "vote.pick": "Thanks! Noted: it was answer {rank}.",
    "vote.bad_rank": "That number isn't one of the answers.",
    "vote.gone": "That answer can't take this vote any more.",
    "vote.not_asker": "Only the person who asked can vote on that answer.",
    # -- several pictures in one message --
    "picker.prompt": "I looked at the first picture; {n} more are in that message. Pick one:",
    "picker.skipped_one": "I looked at the first {answered}; pick the other picture below, or "
                          "send it in another message.",
    "picker.skipped": "I looked at the first {answered}; pick one of the other {skipped} "
                      "pictures below, or send them in another message.",
    "picker.placeholder": "Look at another picture…",
    "picker.item": "Picture {n}",
    "picker.gone": "That message's pictures are no longer at hand; send the picture again.",
    # -- settings --
    "preview.usage": "Use /preview on or /preview off.",
    "preview.on": "Answers come with a preview clip.",
    "preview.off": "Answers come without the preview clip.",
    "admins.lang": "Only the group's admins can set its language.",
    "admins.change": "Only the group's admins can change that.",
    "settings.preview_on": "Preview clips: on.",
    "settings.preview_off": "Preview clips: off.",
    "settings.private_on": "Answers to /anime here: private (only you see them).",
    "settings.private_off": "Answers to /anime here: visible to everyone.",
    "settings.private_denied": "Only server managers can make answers private, and only in a "
                               "server.",
    # -- Telegram --
    "tg.cmd.anime": "Reply to a picture with this to find its anime",
    "tg.cmd.help": "How to use AniRec",
    "tg.cmd.autoanswer": "Group admins: answer every picture (on/off)",
    "tg.cmd.lang": "Language of answers and titles: en, ja, zh",
    "tg.cmd.preview": "Preview clips with answers: on/off",
    "tg.help": "<b>AniRec</b> finds the anime, episode and moment a picture comes from.\n\n"
               "Send me a screenshot, GIF, sticker or short clip (as a photo, video or file). "
               "I answer with the series, episode and timestamp, a preview of the scene, how "
               "sure I am, and the top 5 guesses.\n\n"
               "<b>In groups</b>: put /anime (or mention {at}) in the caption, or reply to a "
               "picture with /anime or {cmd}. Admins can make me answer every picture with "
               "/autoanswer on.\n\n"
               "<b>Language</b>: /lang en, /lang ja or /lang zh (add a second code for the "
               "language of titles, e.g. /lang en ja; group admins: /lang chat ja).\n\n"
               "<b>Feedback</b>: tap ✅ if I was right, ❌ if not, or the number of the right "
               "candidate. A 👍 or 👎 reaction on my answer counts too. It makes me better.",
    "tg.the_bot": "the bot",
    "tg.send_me": "Send me a screenshot, GIF, sticker or short clip and I'll tell you which "
                  "anime it is from. /help explains more.",
    "tg.anime_usage": "Reply to a picture, GIF, sticker or clip with /anime and I'll look it up.",
    "tg.anime_usage_private": "Reply to a picture, GIF, sticker or clip with /anime and I'll "
                              "look it up — or just send it to me here.",
    "tg.auto.private": "In a private chat I always answer; /autoanswer is for groups.",
    "tg.auto.is_on": "Auto-answer is on here. Admins: /autoanswer on or /autoanswer off.",
    "tg.auto.is_off": "Auto-answer is off here. Admins: /autoanswer on or /autoanswer off.",
    "tg.auto.admins": "Only group admins can change auto-answer.",
    "tg.auto.on": "Auto-answer is on: I'll answer every picture in this group. (I need to be "
                  "an admin here, or have privacy mode off, to see pictures that don't mention "
                  "me.)",
    "tg.auto.off": "Auto-answer is off: reply to a picture with /anime when you want me.",
    # -- Discord --
    "dc.help": "Send me a screenshot, GIF, sticker or short clip and I'll tell you which anime "
               "it is from — the episode, the moment, and how sure I am. In a server, mention "
               "me in a reply to a picture, or use `/anime`, or right-click a message → Apps → "
               "**{menu}**.",
    "dc.mention_hint": "Mention me in a reply to a picture (or attach one), or use `/anime` "
                       "with an image or a link.",
    "dc.slash_hint": "Give me an `image` (attach a picture, GIF or clip) or a `url` of one.",
    "dc.no_media": "That message has no picture, GIF, sticker or clip I could look at.",
    "dc.adult_title": "18+ series (hidden outside NSFW channels)",
    "dc.footer": "✅ right · ❌ wrong · 1️⃣–5️⃣ it was that one",
    "dc.cmd.anime": "Find the anime, episode and moment of a picture, GIF or clip",
    "dc.cmd.anime.image": "A screenshot, GIF or short clip",
    "dc.cmd.anime.url": "A link to a picture, GIF or clip",
    "dc.cmd.identify": "Identify anime",
    "dc.cmd.settings": "Your answer language and title language; server managers: private "
                       "answers",
    "dc.cmd.settings.language": "Language of the answers",
    "dc.cmd.settings.titles": "Language of series titles",
    "dc.cmd.settings.preview": "Answers with the preview clip (off: text only, faster)",
    "dc.cmd.settings.private": "Server managers: answers to /anime and Identify anime only the "
                               "asker sees",
    # -- the web chat (bot/web.py, bot/templates/chat.html, bot/webstatic/app.js) --
    "dc.cmd.anirec": "AniRec operator commands",
    "dc.cmd.anirec.stats": "Operator: service and feedback numbers",
    "dc.cmd.anirec.reload": "Operator: load the current models and index",
    "web.title": "AniRec · web chat",
    "web.brand": "web chat",
    "web.lang_label": "Answer language",
    "web.preview_label": "Preview clips",
    "web.preview_title": "Answers with a short clip of the matched scene",
    "web.operator": "Operator",
    "web.welcome": "Hi! Send me a screenshot, GIF or short clip and I'll tell you which anime, "
                   "episode and moment it comes from.",
    "web.welcome_how": "Drop a file anywhere on this page, paste one with Ctrl+V, or choose one "
                       "below. Tell me if I got it right with ✅ ❌ or the number of the right "
                       "answer.",
    "web.samples": "Or try an example from the sample library:",
    "web.sample_alt": "Example {name}",
    "web.choose": "Choose a picture, GIF or clip",
    "web.or_drop": "or drop / paste it here",
    "web.drop": "Drop to identify",
    "web.looking": "Looking it up…",
    "web.a_file": "a file",
    "web.your_picture": "your picture",
    "web.pasted": "pasted picture",
    "web.preview_alt": "Preview of the matched scene",
    "web.still_alt": "The matched frame",
    "web.still": "Still frame",
    "web.cover_alt": "Cover of {title}",
    "web.faces_alt": "Your picture with the faces marked: {names}",
    "web.right": "Right",
    "web.wrong": "Wrong",
    "web.it_was": "It was answer {n}",
    "web.vote_failed": "That did not work. Please try again.",
    "web.thanks": "Thanks!",
    "web.offline": "Could not reach AniRec. Is it still running?",
    "web.file_too_large": "That file is too large (the limit is {limit}).",
    "web.example_gone": "That example is no longer available.",
    "web.example_unshowable": "That example cannot be shown.",
    "web.preview_gone": "That preview is no longer available.",
    "web.bad_request": "That request was not understood.",
    "web.forbidden": "Not allowed from here.",
    "web.not_found": "Not found.",
    "web.method": "Method not allowed.",
    "web.no_file": "There was no file in that message. Send a picture, GIF or clip.",
    "web.uploads_busy": "I'm busy receiving other uploads, please try again in a few seconds.",
    "web.upload_unreadable": "That upload could not be read. Please try again.",
    "web.upload_slow": "That upload took too long to arrive. Please try again.",
    "web.bad_verdict": "Unknown verdict: use correct, wrong or pick.",
    "web.pick_rank": "A pick needs a rank from 1 to 5.",
    "web.no_such_rank": "That answer does not have that many candidates.",
    "web.picker": "You sent {n} files; I looked at the first. Pick another:",
    "web.samples_fast": "That's a lot of examples at once; try again in {s} s.",
}

JA: dict[str, str] = {
    "status.match": "見つかりました",
    "status.match_two_times": "見つかりました — このエピソードの2つの場面が一致します",
    "status.match_rival": "おそらくこれ — ほぼ同じくらい一致する別の場面があります",
    "status.unsure": "自信がありません — 近い候補はこちら",
    "status.no_match": "一致なし — ライブラリに見つかりませんでした",
    "status.no_match_guesses": "一致なし — ライブラリによく合う場面はありません",
    "confidence": "確信度 {pct}",
    "confidence.help": "確信度: いちばん上の答えが正しい見込み",
    "episode": "第{n}話",
    "season": "第{n}期",
    "movie": "劇場版",
    "opening": "{title} のオープニング",
    "ending": "{title} のエンディング",
    "oped": "{title} のオープニングかエンディング",
    "at": "{where} {time}",
    "or_at": "{a} または {b}",
    "also": "こちらの可能性も: {line}",
    "top5": "ほかの候補",
    "closest": "近い場面（よく合うものはありません）",
    "show_closest": "近い場面を表示",
    "no_match.hint": "切り抜きや字幕のない、きれいなスクリーンショットか、同じ場面の別のコマを"
                     "送ってください。",
    "characters": "キャラクター",
    "looks_like": "ジャンル",
    "feedback.hint": "合っていますか？ ✅ か ❌、または正しい候補の番号を押してください。",
    "synopsis": "あらすじ",
    "lang.set": "言語: 日本語。作品タイトル: {titles}。",
    "lang.usage": "/lang en、/lang ja、/lang zh のどれかを使ってください（タイトルの言語も指定"
                  "できます。例: /lang ja en）。",
    "lang.title_default": "ライブラリのまま",
    "unknown": "不明 {n} 人",

    "error.generic": "すみません、調べている途中で問題が起きました。しばらくしてからもう一度お試しください。",
    "error.config": "サーバーで問題が起きました。しばらくしてからもう一度お試しください。",
    "error.index": "ライブラリの索引がまだできていません。運営者に `anirec index` の実行を頼んでください。",
    "error.no_episodes": "まだエピソードが索引されていません。運営者にライブラリで `anirec index` "
                         "を実行するよう頼んでください。",
    "error.busy": "ただいま混み合っています。{s} 秒後にもう一度お試しください。",
    "error.rate": "画像の送信が速すぎます。{s} 秒後にもう一度お試しください。",
    "error.invalid": "そのファイルを画像・GIF・短い動画として読み取れませんでした。",
    "error.unsupported": "その形式のファイルには対応していません。画像、GIF、スタンプ、短い動画を送ってください。",
    "error.not_media": "そのファイルは画像でも動画でもありません。スクリーンショット、GIF、スタンプ、"
                       "短い動画（{formats}）を送ってください。",
    "error.lottie": "それはアニメーション（Lottie）スタンプです。読めるのは画像のスタンプだけです。"
                    "代わりにスクリーンショットを送ってください。",
    "error.too_large": "ファイルが大きすぎます。",
    "error.too_large_size": "ファイルが大きすぎます（{size}）。読めるのは {limit} までです。",
    "error.too_long": "動画が長すぎます（{s} 秒）。読めるのは {max} 秒までです。",
    "error.not_found": "その回答はもう見つかりません。",
    "error.download": "画像をダウンロードできませんでした。もう一度試すか、ファイルを直接添付してください。",
    "error.download_slow": "ファイルのダウンロードに時間がかかりすぎました。",
    "error.link_slow": "リンク先のダウンロードに時間がかかりすぎました。",
    "error.link_scheme": "たどれるのは画像への http(s) リンクだけです。",
    "error.link_login": "ユーザー名やパスワードを含むリンクはたどりません。",
    "error.link_host": "ここではチャットサービス自身のサーバーの画像だけをダウンロードします。"
                       "ファイルを直接添付してください。",
    "error.link_address": "そのアドレスからは画像を取得できません。",
    "error.link_redirects": "そのリンクはリダイレクトが多すぎます。",
    "error.link_status": "リンク先がエラーを返しました（{status}）。",
    "error.link_type": "リンク先は画像でも動画でもありません（{type}）。",
    "error.not_http": "それは画像への http(s) リンクではありません。",
    "error.answer_too_old": "その回答は古すぎます。画像をもう一度送ってください。",
    "error.owner_only": "そのコマンドはボットの運営者専用です。",
    "reloaded": "再読み込みしました: {what}",
    "vote.withdrawn": "投票を取り消しました。",
    "vote.correct": "ありがとうございます！正解として記録しました ✅",
    "vote.wrong": "ありがとうございます！不正解として記録しました ❌（ほかの候補が正しければ番号を押してください）",
    "vote.pick": "ありがとうございます！候補 {rank} が正解として記録しました。",
    "vote.bad_rank": "その番号の候補はありません。",
    "vote.gone": "その回答にはもう投票できません。",
    "vote.not_asker": "この回答に投票できるのは質問した本人だけです。",
    "picker.prompt": "最初の画像を調べました。このメッセージにはあと {n} 枚あります。選んでください:",
    "picker.skipped_one": "最初の {answered} 枚を調べました。残りの1枚は下から選ぶか、別のメッセージで送ってください。",
    "picker.skipped": "最初の {answered} 枚を調べました。残りの {skipped} 枚は下から選ぶか、"
                      "別のメッセージで送ってください。",
    "picker.placeholder": "ほかの画像を調べる…",
    "picker.item": "画像 {n}",
    "picker.gone": "そのメッセージの画像はもう手元にありません。画像をもう一度送ってください。",
    "preview.usage": "/preview on か /preview off を使ってください。",
    "preview.on": "回答にプレビュー動画を付けます。",
    "preview.off": "回答にプレビュー動画を付けません。",
    "admins.lang": "グループの言語を設定できるのは管理者だけです。",
    "admins.change": "それを変更できるのはグループの管理者だけです。",
    "settings.preview_on": "プレビュー動画: オン。",
    "settings.preview_off": "プレビュー動画: オフ。",
    "settings.private_on": "ここでの /anime への回答: 非公開（あなたにだけ見えます）。",
    "settings.private_off": "ここでの /anime への回答: 全員に見えます。",
    "settings.private_denied": "回答を非公開にできるのはサーバーの管理者だけで、サーバー内でのみです。",
    "tg.cmd.anime": "画像に返信してアニメを調べる",
    "tg.cmd.help": "AniRec の使い方",
    "tg.cmd.autoanswer": "グループ管理者: すべての画像に回答（on/off）",
    "tg.cmd.lang": "回答とタイトルの言語: en, ja, zh",
    "tg.cmd.preview": "回答のプレビュー動画: on/off",
    "tg.help": "<b>AniRec</b> は画像がどのアニメの、どの話の、どの場面かを見つけます。\n\n"
               "スクリーンショット、GIF、スタンプ、短い動画を（写真・動画・ファイルとして）送ってください。"
               "作品、話数、時刻、場面のプレビュー、確信度、上位5件の候補をお答えします。\n\n"
               "<b>グループでは</b>: キャプションに /anime と書く（または {at} をメンションする）か、"
               "画像に /anime または {cmd} で返信してください。管理者は /autoanswer on で"
               "すべての画像に回答させられます。\n\n"
               "<b>言語</b>: /lang en、/lang ja、/lang zh（2つ目のコードでタイトルの言語も指定できます。"
               "例: /lang ja en。グループ管理者: /lang chat ja）。\n\n"
               "<b>フィードバック</b>: 合っていれば ✅、違えば ❌、または正しい候補の番号を押してください。"
               "回答への 👍 や 👎 のリアクションも数えます。精度向上に役立ちます。",
    "tg.the_bot": "このボット",
    "tg.send_me": "スクリーンショット、GIF、スタンプ、短い動画を送ってくだされば、どのアニメか"
                  "お答えします。詳しくは /help をどうぞ。",
    "tg.anime_usage": "画像、GIF、スタンプ、動画に /anime で返信すると調べます。",
    "tg.anime_usage_private": "画像、GIF、スタンプ、動画に /anime で返信すると調べます。"
                              "ここに直接送ってもかまいません。",
    "tg.auto.private": "個別チャットではいつも回答します。/autoanswer はグループ用です。",
    "tg.auto.is_on": "ここでは自動回答はオンです。管理者: /autoanswer on または /autoanswer off。",
    "tg.auto.is_off": "ここでは自動回答はオフです。管理者: /autoanswer on または /autoanswer off。",
    "tg.auto.admins": "自動回答を変更できるのはグループの管理者だけです。",
    "tg.auto.on": "自動回答をオンにしました: このグループのすべての画像に回答します。"
                  "（メンションのない画像を見るには、管理者にするかプライバシーモードをオフにしてください。）",
    "tg.auto.off": "自動回答をオフにしました: 調べてほしいときは画像に /anime で返信してください。",
    "dc.help": "スクリーンショット、GIF、スタンプ、短い動画を送ってくだされば、どのアニメか、"
               "どの話のどの場面か、どのくらい確かかをお答えします。サーバーでは画像への返信で"
               "メンションするか、`/anime` を使うか、メッセージを右クリック → アプリ → **{menu}** を選んでください。",
    "dc.mention_hint": "画像への返信でメンションする（または画像を添付する）か、画像かリンクを付けて "
                       "`/anime` を使ってください。",
    "dc.slash_hint": "`image`（画像・GIF・動画を添付）か、その `url` を指定してください。",
    "dc.no_media": "そのメッセージには調べられる画像、GIF、スタンプ、動画がありません。",
    "dc.adult_title": "18禁作品（NSFW チャンネル以外では非表示）",
    "dc.footer": "✅ 正解 · ❌ 不正解 · 1️⃣–5️⃣ その候補が正解",
    "dc.cmd.anime": "画像・GIF・動画のアニメ、話数、場面を調べる",
    "dc.cmd.anime.image": "スクリーンショット、GIF、短い動画",
    "dc.cmd.anime.url": "画像・GIF・動画へのリンク",
    "dc.cmd.identify": "アニメを特定",
    "dc.cmd.settings": "回答とタイトルの言語。サーバー管理者: 非公開の回答",
    "dc.cmd.settings.language": "回答の言語",
    "dc.cmd.settings.titles": "作品タイトルの言語",
    "dc.cmd.settings.preview": "回答にプレビュー動画を付ける（オフ: 文字だけで速い）",
    "dc.cmd.settings.private": "サーバー管理者: /anime と「アニメを特定」への回答を質問者だけに見せる",
    "dc.cmd.anirec": "AniRec 運営者コマンド",
    "dc.cmd.anirec.stats": "運営者: サービスとフィードバックの数値",
    "dc.cmd.anirec.reload": "運営者: 現在のモデルと索引を読み込む",
    "web.title": "AniRec · ウェブチャット",
    "web.brand": "ウェブチャット",
    "web.lang_label": "回答の言語",
    "web.preview_label": "プレビュー動画",
    "web.preview_title": "一致した場面の短い動画を付けて回答します",
    "web.operator": "運営者",
    "web.welcome": "こんにちは！スクリーンショット、GIF、短い動画を送ってくだされば、どのアニメの、"
                   "どの話の、どの場面かをお答えします。",
    "web.welcome_how": "このページのどこかにファイルをドロップするか、Ctrl+V で貼り付けるか、下から選んでください。"
                       "合っていたかどうかを ✅ ❌ か正しい候補の番号で教えてください。",
    "web.samples": "サンプルライブラリの例を試すこともできます:",
    "web.sample_alt": "例 {name}",
    "web.choose": "画像、GIF、動画を選ぶ",
    "web.or_drop": "またはここにドロップ／貼り付け",
    "web.drop": "ドロップして調べる",
    "web.looking": "調べています…",
    "web.a_file": "ファイル",
    "web.your_picture": "あなたの画像",
    "web.pasted": "貼り付けた画像",
    "web.preview_alt": "一致した場面のプレビュー",
    "web.still_alt": "一致したコマ",
    "web.still": "静止画",
    "web.cover_alt": "{title} のカバー",
    "web.faces_alt": "顔に印を付けたあなたの画像: {names}",
    "web.right": "正解",
    "web.wrong": "不正解",
    "web.it_was": "候補 {n} が正解",
    "web.vote_failed": "うまくいきませんでした。もう一度お試しください。",
    "web.thanks": "ありがとうございます！",
    "web.offline": "AniRec に接続できません。まだ動いていますか？",
    "web.file_too_large": "ファイルが大きすぎます（上限は {limit}）。",
    "web.example_gone": "その例はもう利用できません。",
    "web.example_unshowable": "その例は表示できません。",
    "web.preview_gone": "そのプレビューはもう利用できません。",
    "web.bad_request": "そのリクエストは理解できませんでした。",
    "web.forbidden": "ここからは許可されていません。",
    "web.not_found": "見つかりません。",
    "web.method": "そのメソッドは使えません。",
    "web.no_file": "メッセージにファイルがありませんでした。画像、GIF、動画を送ってください。",
    "web.uploads_busy": "ほかのアップロードを受信中です。数秒後にもう一度お試しください。",
    "web.upload_unreadable": "アップロードを読み取れませんでした。もう一度お試しください。",
    "web.upload_slow": "アップロードの到着に時間がかかりすぎました。もう一度お試しください。",
    "web.bad_verdict": "不明な評価です: correct、wrong、pick のどれかを使ってください。",
    "web.pick_rank": "候補の選択には 1〜5 の番号が必要です。",
    "web.no_such_rank": "その回答にはそんなに多くの候補がありません。",
    "web.picker": "{n} 個のファイルが送られました。最初のものを調べました。ほかを選んでください:",
    "web.samples_fast": "一度にたくさんの例を試しています。{s} 秒後にもう一度お試しください。",
}

ZH: dict[str, str] = {
    "status.match": "找到了",
    "status.match_two_times": "找到了 — 本集有两个时刻都符合",
    "status.match_rival": "可能是这个 — 另一个场景几乎同样符合",
    "status.unsure": "不确定 — 这些是最接近的猜测",
    "status.no_match": "没有匹配 — 库中找不到这个画面",
    "status.no_match_guesses": "没有匹配 — 库中没有很符合的场景",
    "confidence": "置信度 {pct}",
    "confidence.help": "置信度：第一个答案正确的可能性",
    "episode": "第{n}集",
    "season": "第{n}季",
    "movie": "电影",
    "opening": "{title} 的片头",
    "ending": "{title} 的片尾",
    "oped": "{title} 的片头或片尾",
    "at": "{where} {time}",
    "or_at": "{a} 或 {b}",
    "also": "也可能是：{line}",
    "top5": "其他候选",
    "closest": "最接近的场景（都不太符合）",
    "show_closest": "显示最接近的场景",
    "no_match.hint": "请发送没有裁剪、没有字幕的清晰截图，或同一场景的另一帧。",
    "characters": "角色",
    "looks_like": "看起来像",
    "feedback.hint": "对吗？点 ✅ 或 ❌，或点正确答案的编号。",
    "synopsis": "简介",
    "lang.set": "语言：中文。作品标题：{titles}。",
    "lang.usage": "请用 /lang en、/lang ja 或 /lang zh（也可以指定标题语言，例如 /lang zh ja）。",
    "lang.title_default": "按库中的标题",
    "unknown": "{n} 个未知",

    "error.generic": "抱歉，查找时出了问题。请稍后再试。",
    "error.config": "服务器出了问题。请稍后再试。",
    "error.index": "库的索引还没有准备好。请让管理员运行 `anirec index`。",
    "error.no_episodes": "还没有索引任何剧集。请让管理员对库运行 `anirec index`。",
    "error.busy": "我现在很忙，请 {s} 秒后再试。",
    "error.rate": "你发送图片太快了；请 {s} 秒后再试。",
    "error.invalid": "无法把这个文件读作图片、GIF 或短视频。",
    "error.unsupported": "不支持这种文件类型。请发送图片、GIF、贴纸或短视频。",
    "error.not_media": "这个文件不是图片也不是视频。请发送截图、GIF、贴纸或短视频（{formats}）。",
    "error.lottie": "这是动画（Lottie）贴纸；我只能读取图片贴纸。请改为发送它的截图。",
    "error.too_large": "文件太大了。",
    "error.too_large_size": "文件太大了（{size}）；我最多能读取 {limit}。",
    "error.too_long": "视频太长了（{s} 秒）；我最多能读取 {max} 秒。",
    "error.not_found": "这个回答已经找不到了。",
    "error.download": "无法下载这张图片。请重试，或直接附上文件。",
    "error.download_slow": "文件下载时间太长。",
    "error.link_slow": "链接下载时间太长。",
    "error.link_scheme": "我只跟随指向图片的 http(s) 链接。",
    "error.link_login": "我不跟随包含用户名或密码的链接。",
    "error.link_host": "这里只从聊天平台自己的服务器下载图片；请直接附上文件。",
    "error.link_address": "无法从那个地址获取图片。",
    "error.link_redirects": "这个链接重定向次数太多。",
    "error.link_status": "链接返回了错误（{status}）。",
    "error.link_type": "链接不是图片也不是视频（{type}）。",
    "error.not_http": "这不是指向图片的 http(s) 链接。",
    "error.answer_too_old": "这个回答太旧了；请重新发送图片。",
    "error.owner_only": "这个命令仅供机器人的管理员使用。",
    "reloaded": "已重新加载：{what}",
    "vote.withdrawn": "你的投票已撤回。",
    "vote.correct": "谢谢！已标记为正确 ✅",
    "vote.wrong": "谢谢！已标记为错误 ❌（如果其他候选正确，请点它的编号）",
    "vote.pick": "谢谢！已记录：正确的是第 {rank} 个答案。",
    "vote.bad_rank": "没有这个编号的答案。",
    "vote.gone": "这个回答已经不能再投票了。",
    "vote.not_asker": "只有提问的人才能对这个回答投票。",
    "picker.prompt": "我看了第一张图片；这条消息里还有 {n} 张。请选择：",
    "picker.skipped_one": "我看了前 {answered} 张；请在下面选择另一张，或在另一条消息中发送。",
    "picker.skipped": "我看了前 {answered} 张；请在下面从其余 {skipped} 张中选择，或在另一条消息中发送。",
    "picker.placeholder": "查看另一张图片…",
    "picker.item": "图片 {n}",
    "picker.gone": "这条消息的图片已经不在了；请重新发送图片。",
    "preview.usage": "请用 /preview on 或 /preview off。",
    "preview.on": "回答会附带预览视频。",
    "preview.off": "回答不附带预览视频。",
    "admins.lang": "只有群管理员可以设置群的语言。",
    "admins.change": "只有群管理员可以更改这个设置。",
    "settings.preview_on": "预览视频：开。",
    "settings.preview_off": "预览视频：关。",
    "settings.private_on": "这里对 /anime 的回答：私密（只有你能看到）。",
    "settings.private_off": "这里对 /anime 的回答：所有人可见。",
    "settings.private_denied": "只有服务器管理员才能把回答设为私密，而且只能在服务器中。",
    "tg.cmd.anime": "回复一张图片，查找它出自哪部动画",
    "tg.cmd.help": "如何使用 AniRec",
    "tg.cmd.autoanswer": "群管理员：回答每张图片（on/off）",
    "tg.cmd.lang": "回答和标题的语言：en, ja, zh",
    "tg.cmd.preview": "回答附带预览视频：on/off",
    "tg.help": "<b>AniRec</b> 能找出图片出自哪部动画、哪一集、哪个时刻。\n\n"
               "发送截图、GIF、贴纸或短视频（作为照片、视频或文件）。我会回答作品、集数和时间、"
               "场景预览、我的把握程度，以及前 5 个猜测。\n\n"
               "<b>在群里</b>：在说明中写 /anime（或提及 {at}），或用 /anime 或 {cmd} 回复图片。"
               "管理员可以用 /autoanswer on 让我回答每张图片。\n\n"
               "<b>语言</b>：/lang en、/lang ja 或 /lang zh（第二个代码指定标题语言，例如 "
               "/lang zh ja；群管理员：/lang chat zh）。\n\n"
               "<b>反馈</b>：答对了点 ✅，答错了点 ❌，或点正确候选的编号。对我的回答做 👍 或 👎 "
               "反应也算数。这能让我变得更好。",
    "tg.the_bot": "机器人",
    "tg.send_me": "发送截图、GIF、贴纸或短视频，我会告诉你它出自哪部动画。/help 有更多说明。",
    "tg.anime_usage": "用 /anime 回复图片、GIF、贴纸或视频，我就会查找。",
    "tg.anime_usage_private": "用 /anime 回复图片、GIF、贴纸或视频，我就会查找——或者直接发给我。",
    "tg.auto.private": "在私聊中我总是回答；/autoanswer 用于群组。",
    "tg.auto.is_on": "这里的自动回答已开启。管理员：/autoanswer on 或 /autoanswer off。",
    "tg.auto.is_off": "这里的自动回答已关闭。管理员：/autoanswer on 或 /autoanswer off。",
    "tg.auto.admins": "只有群管理员可以更改自动回答。",
    "tg.auto.on": "自动回答已开启：我会回答这个群里的每张图片。（要看到没有提及我的图片，"
                  "我需要是管理员，或关闭隐私模式。）",
    "tg.auto.off": "自动回答已关闭：需要时请用 /anime 回复图片。",
    "dc.help": "发送截图、GIF、贴纸或短视频，我会告诉你它出自哪部动画——哪一集、哪个时刻，以及我有多大把握。"
               "在服务器中，请在回复图片时提及我，或使用 `/anime`，或右键点击消息 → 应用 → **{menu}**。",
    "dc.mention_hint": "请在回复图片时提及我（或附上图片），或带上图片或链接使用 `/anime`。",
    "dc.slash_hint": "请给我一个 `image`（附上图片、GIF 或视频）或它的 `url`。",
    "dc.no_media": "那条消息里没有我能查看的图片、GIF、贴纸或视频。",
    "dc.adult_title": "18+ 作品（在 NSFW 频道外隐藏）",
    "dc.footer": "✅ 正确 · ❌ 错误 · 1️⃣–5️⃣ 就是那个",
    "dc.cmd.anime": "查找图片、GIF 或视频的动画、集数和时刻",
    "dc.cmd.anime.image": "截图、GIF 或短视频",
    "dc.cmd.anime.url": "指向图片、GIF 或视频的链接",
    "dc.cmd.identify": "识别动画",
    "dc.cmd.settings": "你的回答语言和标题语言；服务器管理员：私密回答",
    "dc.cmd.settings.language": "回答的语言",
    "dc.cmd.settings.titles": "作品标题的语言",
    "dc.cmd.settings.preview": "回答附带预览视频（关：仅文字，更快）",
    "dc.cmd.settings.private": "服务器管理员：对 /anime 和“识别动画”的回答只有提问者可见",
    "dc.cmd.anirec": "AniRec 管理员命令",
    "dc.cmd.anirec.stats": "管理员：服务和反馈数据",
    "dc.cmd.anirec.reload": "管理员：加载当前的模型和索引",
    "web.title": "AniRec · 网页聊天",
    "web.brand": "网页聊天",
    "web.lang_label": "回答语言",
    "web.preview_label": "预览视频",
    "web.preview_title": "回答附带匹配场景的短视频",
    "web.operator": "管理员",
    "web.welcome": "你好！发送截图、GIF 或短视频，我会告诉你它出自哪部动画、哪一集、哪个时刻。",
    "web.welcome_how": "把文件拖到页面任意位置，用 Ctrl+V 粘贴，或在下面选择。用 ✅ ❌ 或正确答案的编号告诉我对不对。",
    "web.samples": "或者试试示例库中的例子：",
    "web.sample_alt": "示例 {name}",
    "web.choose": "选择图片、GIF 或视频",
    "web.or_drop": "或拖放／粘贴到这里",
    "web.drop": "放下即可识别",
    "web.looking": "正在查找…",
    "web.a_file": "一个文件",
    "web.your_picture": "你的图片",
    "web.pasted": "粘贴的图片",
    "web.preview_alt": "匹配场景的预览",
    "web.still_alt": "匹配的画面",
    "web.still": "静止画面",
    "web.cover_alt": "{title} 的封面",
    "web.faces_alt": "标出人脸的你的图片：{names}",
    "web.right": "正确",
    "web.wrong": "错误",
    "web.it_was": "是第 {n} 个答案",
    "web.vote_failed": "没有成功。请再试一次。",
    "web.thanks": "谢谢！",
    "web.offline": "无法连接 AniRec。它还在运行吗？",
    "web.file_too_large": "文件太大了（上限是 {limit}）。",
    "web.example_gone": "这个例子已经不可用了。",
    "web.example_unshowable": "这个例子无法显示。",
    "web.preview_gone": "这个预览已经不可用了。",
    "web.bad_request": "无法理解这个请求。",
    "web.forbidden": "不允许从这里访问。",
    "web.not_found": "未找到。",
    "web.method": "不允许的方法。",
    "web.no_file": "消息里没有文件。请发送图片、GIF 或视频。",
    "web.uploads_busy": "正在接收其他上传，请几秒后再试。",
    "web.upload_unreadable": "无法读取这次上传。请再试一次。",
    "web.upload_slow": "上传到达时间太长。请再试一次。",
    "web.bad_verdict": "未知的评价：请用 correct、wrong 或 pick。",
    "web.pick_rank": "选择候选需要 1 到 5 的编号。",
    "web.no_such_rank": "这个回答没有那么多候选。",
    "web.picker": "你发送了 {n} 个文件；我看了第一个。请选择另一个：",
    "web.samples_fast": "一次试了太多例子；请 {s} 秒后再试。",
}

TABLES: dict[str, dict[str, str]] = {"en": EN, "ja": JA, "zh": ZH}


def text(lang: str | None, key: str, **values: object) -> str:
    """The string `key` in `lang` (English when the language or the key is missing)."""
    table = TABLES.get(lang or DEFAULT, EN)
    template = table.get(key) or EN[key]
    return template.format(**values) if values else template


def pick_lang(code: str | None) -> str | None:
    """"ja-JP" → "ja", "zh-Hant-TW" → "zh", "en-GB,en;q=0.9" → "en"; None for others.

    An Accept-Language header is read in the order given (the q-values are in that order in
    every browser)."""
    if not code:
        return None
    for part in code.split(","):
        tag = part.split(";")[0].strip().lower().replace("_", "-")
        base = tag.split("-")[0]
        if base in TABLES:
            return base
    return None
