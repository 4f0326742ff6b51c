// Casegate console: keyboard shortcuts of the approval queue.
//   j / k  next / previous draft     a  approve as written
//   e      edit the text (Ctrl+Enter approves the edit)
//   r      reject (type the reason, Enter)      Esc  leave a text field
"use strict";

(function () {
  const cards = Array.from(document.querySelectorAll("article.draft.pending"));
  if (cards.length === 0) return;
  let current = 0;

  function select(i) {
    current = Math.max(0, Math.min(cards.length - 1, i));
    cards.forEach((c, n) => c.classList.toggle("selected", n === current));
    cards[current].scrollIntoView({ block: "nearest" });
  }

  function typing(el) {
    return el && (el.tagName === "TEXTAREA" || el.tagName === "INPUT" || el.tagName === "SELECT");
  }

  cards.forEach((card, i) => card.addEventListener("click", () => select(i)));

  document.addEventListener("keydown", (ev) => {
    const card = cards[current];
    if (typing(ev.target)) {
      if (ev.key === "Escape") { ev.target.blur(); ev.preventDefault(); }
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey) && ev.target.tagName === "TEXTAREA") {
        ev.preventDefault();
        ev.target.form.querySelector('button[value="edit"]').click();
      }
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    switch (ev.key) {
      case "j": select(current + 1); break;
      case "k": select(current - 1); break;
      case "a": card.querySelector('button[value="approve"]').click(); break;
      case "e": {
        const text = card.querySelector("textarea");
        text.focus();
        text.setSelectionRange(text.value.length, text.value.length);
        break;
      }
      case "r": card.querySelector("form.reject input[name=reason]").focus(); break;
      default: return;
    }
    ev.preventDefault();
  });

  select(0);
})();
