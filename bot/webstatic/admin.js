// AniRec operator page: the "this one" and "resolved" buttons of the wrong-answers queue.
"use strict";

document.addEventListener("click", async (e) => {
  const btn = e.target.closest("button.resolve");
  if (!btn) return;
  btn.disabled = true;
  try {
    const r = await fetch("/admin/api/resolve", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-AniRec-Admin": "1" },
      body: JSON.stringify({ query_id: btn.dataset.qid, resolved: true })
    });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) {
      btn.textContent = data.error || "Failed";
      btn.disabled = false;
      return;
    }
    btn.closest("article").remove();
  } catch (err) {
    btn.textContent = "Failed";
    btn.disabled = false;
  }
});

document.addEventListener("click", async (e) => {
  const btn = e.target.closest("button.pick");
  if (!btn) return;
  btn.disabled = true;
  try {
    const r = await fetch("/admin/api/pick", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-AniRec-Admin": "1" },
      body: JSON.stringify({ query_id: btn.dataset.qid, rank: Number(btn.dataset.rank) })
    });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) {
      btn.textContent = data.error || "Failed";
      return;
    }
    const list = btn.closest("ol");
    for (const li of list.querySelectorAll("li")) {
      li.classList.remove("picked");
      const b = li.querySelector("button.pick");
      if (b) b.textContent = "This one";
    }
    btn.closest("li").classList.add("picked");
    btn.textContent = "Picked ✔";
  } catch (err) {
    btn.textContent = "Failed";
  } finally {
    btn.disabled = false;
  }
});
