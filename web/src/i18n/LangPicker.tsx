// The language switch shown in the top bar and on the login screen.
import { LANGS, setLang, t, useLang } from '.';
import type { Lang } from '.';

export function LangPicker() {
  const current = useLang();
  return (
    <label class="lang-pick">
      <span class="sr-only">{t('lang.label')}</span>
      <select
        data-testid="lang"
        title={t('lang.label')}
        value={current}
        onChange={(e) => setLang(e.currentTarget.value as Lang)}
      >
        {LANGS.map((l) => (
          <option key={l} value={l} lang={l}>
            {t(`lang.${l}`)}
          </option>
        ))}
      </select>
    </label>
  );
}
