// Progressive enhancement of the signup form: post JSON to the API and show its messages inline.
// Without JavaScript the form posts to /signup and the server renders the same messages.
"use strict";

(function () {
  const FAILURE = "Sorry about this. Something went wrong, please come back and try again later.";
  const FIELDS = ["first_name", "last_name", "email", "zip"];

  function init() {
    const section = document.getElementById("signup");
    const form = document.getElementById("signup-form");
    if (!section || !form || !window.fetch) return;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      submit(section, form);
    });
  }

  function payload(form) {
    const data = {};
    for (const name of FIELDS) data[name] = form.elements[name].value;
    const version = form.elements["consent_text_version"].value;
    if (version) data.consent_text_version = parseInt(version, 10);
    const source = form.elements["source"].value;
    if (source) data.source = source;
    data.form_token = form.elements["form_token"].value;
    data.website = form.elements["website"].value;
    const utm = {};
    for (const input of form.querySelectorAll("input[type=hidden][name^=utm_]")) {
      if (input.value) utm[input.name] = input.value;
    }
    if (Object.keys(utm).length) data.utm = utm;
    return data;
  }

  function showErrors(form, errors) {
    let first = null;
    for (const name of FIELDS) {
      const message = typeof errors[name] === "string" ? errors[name] : "";
      const holder = form.elements[name].closest(".field");
      document.getElementById("error-" + name).textContent = message;
      holder.classList.toggle("invalid", Boolean(message));
      // aria-invalid="" means "false" to assistive technology: set "true" or remove it.
      if (message) form.elements[name].setAttribute("aria-invalid", "true");
      else form.elements[name].removeAttribute("aria-invalid");
      if (message && !first) first = form.elements[name];
    }
    // A consent text version the server no longer knows: the reply says what to do (reload).
    const stale = typeof errors.consent_text_version === "string" ? errors.consent_text_version : "";
    const otherErrors = Object.keys(errors).filter((name) => !FIELDS.includes(name));
    document.getElementById("form-failure").textContent =
      stale || (otherErrors.length && !first ? FAILURE : "");
    if (first) first.focus();
  }

  function showThanks(section, reply) {
    const thanks = document.getElementById("thanks");
    document.getElementById("thanks-message").textContent = reply.message;
    if (reply.suggestion) {
      // The hint's words and link are in the page (as on the no-JavaScript thank-you page).
      document.getElementById("thanks-suggested-email").textContent = reply.suggestion;
      document.getElementById("thanks-suggestion").hidden = false;
    }
    section.hidden = true;
    thanks.hidden = false;
    thanks.focus();
  }

  async function submit(section, form) {
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    document.getElementById("form-failure").textContent = "";
    try {
      const response = await fetch(section.dataset.api, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: JSON.stringify(payload(form)),
        credentials: "same-origin",
      });
      const reply = await response.json().catch(() => ({}));
      if (response.status === 202) {
        showThanks(section, reply);
      } else if (response.status === 422 && reply.errors) {
        showErrors(form, reply.errors);
      } else {
        document.getElementById("form-failure").textContent = reply.message || FAILURE;
      }
    } catch (error) {
      document.getElementById("form-failure").textContent = FAILURE;
    } finally {
      button.disabled = false;
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
